"""AlexNet (torchvision layout) on shapes.

Command:
  python -m experiments.train --config=experiments/configs/alexnet_shapes.py --workdir=/tmp/alexnet_shapes

Trains `alexnet` on embedded `shapes` classification (8 classes) at 64x64.
Measured with --config.num_epochs=3 (seed 0): 0.514 in 111 s on 2 CPU cores; the
recipe is not tuned for AlexNet yet.
Presets: :test (3 steps, for the tests); :gpu, :tpu (bfloat16, bigger batch; docs/scale.md).
"""

from experiments.configs.shapes_base import apply_presets, shapes_config


def get_config(arg=None):
  c = shapes_config("alexnet", 64, test_size=64)  # AlexNet needs >= 63
  return apply_presets(c, arg)
