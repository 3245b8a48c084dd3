"""GoogLeNet with auxiliary heads (weight 0.3, training only) on shapes.

Command:
  python -m experiments.train --config=experiments/configs/googlenet_shapes.py --workdir=/tmp/googlenet_shapes

Trains `googlenet_aux` on embedded `shapes` classification (8 classes) at 64x64.
Measured with --config.num_epochs=3 (seed 0): 0.954 in 254 s on 2 CPU cores;
the 6-epoch default is not measured yet.
Presets: :test (3 steps, for the tests); :gpu, :tpu (bfloat16, bigger batch; docs/scale.md).
"""

from cnn_lab.train.configs import apply_presets
from experiments.configs.shapes_base import shapes_config, shapes_presets

PRESETS = shapes_presets()


def get_config(arg=None):
  return apply_presets(shapes_config(model=dict(name="googlenet_aux"), size=64), arg, PRESETS)
