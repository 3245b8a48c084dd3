"""GoogLeNet with auxiliary heads (weight 0.3, training only) on shapes.

Command:
  python -m experiments.train --config=experiments/configs/googlenet_shapes.py --workdir=/tmp/googlenet_shapes

Trains `googlenet_aux` on embedded `shapes` classification (8 classes) at 64x64.
Measured with --config.num_epochs=3 (seed 0): 0.954 in 254 s on 2 CPU cores;
the 6-epoch default is not measured yet.
Presets: :test (3 steps, for the tests); :gpu, :tpu (bfloat16, bigger batch; docs/scale.md).
"""

from experiments.configs.shapes_base import apply_presets, shapes_config


def get_config(arg=None):
  c = shapes_config("googlenet_aux", 64)
  return apply_presets(c, arg)
