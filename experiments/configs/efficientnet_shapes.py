"""EfficientNet-B0 (squeeze-excitation, stochastic depth) on shapes.

Command:
  python -m experiments.train --config=experiments/configs/efficientnet_shapes.py --workdir=/tmp/efficientnet_shapes

Trains `efficientnet_b0` on embedded `shapes` classification (8 classes) at 64x64.
Measured with --config.num_epochs=3 (seed 0): 0.477 in 263 s on 2 CPU cores; the
recipe is not tuned for EfficientNet yet. At initialisation its gradient is not
exploding (global norm 13.7, the first layer's |g|/|w| 0.58: README, "Diagnosing a
recipe that trains badly"), unlike MobileNetV2's, yet it learns as slowly: 300 steps at
32x32 with the stem's stride 1 (seed 0, the cost of 64x64): 0.433, training accuracy
0.26 at step 200. What was ruled out for MobileNetV2 is in `mobilenet_shapes.py`.
Presets: :test (3 steps, for the tests); :gpu, :tpu (bfloat16, bigger batch; docs/scale.md).
"""

from cnn_lab.train.configs import apply_presets
from experiments.configs.shapes_base import ONE_CPU_DEVICE, shapes_config, shapes_presets

PRESETS = shapes_presets()


def get_config(arg=None):
  # impl="scratch": on CPU, XLA's grouped convolution is slow for depthwise layers; the
  # scratch path (elementwise taps) measured 3x (stride 1) to 6x (stride 2) faster
  # forward+backward on 64x32x32x96, 3x3. On GPU/TPU use --config.model.impl=xla.
  c = shapes_config(model=dict(name="efficientnet_b0", impl="scratch"), size=64,
                    num_epochs=8.0, **ONE_CPU_DEVICE)
  return apply_presets(c, arg, PRESETS)
