"""EfficientNet-B0 (squeeze-excitation, stochastic depth) on shapes.

Command:
  python -m experiments.train --config=experiments/configs/efficientnet_shapes.py --workdir=/tmp/efficientnet_shapes

Trains `efficientnet_b0` on embedded `shapes` classification (8 classes) at 64x64.
Presets: :test (3 steps, for the tests).
"""

from experiments.configs.shapes_base import apply_presets, shapes_config


def get_config(arg=None):
  c = shapes_config("efficientnet_b0", 64)
  return apply_presets(c, arg)
