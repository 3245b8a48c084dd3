"""MobileNetV2 on shapes; :v1 is MobileNet v1.

Command:
  python -m experiments.train --config=experiments/configs/mobilenet_shapes.py --workdir=/tmp/mobilenet_shapes

Trains `mobilenet_v2` on embedded `shapes` classification (8 classes) at 64x64.
Presets: :test (3 steps, for the tests), :v1.
"""

from experiments.configs.shapes_base import apply_presets, shapes_config


def get_config(arg=None):
  c = shapes_config("mobilenet_v2", 64)
  return apply_presets(c, arg, {"v1": lambda c: setattr(c.model, "name", "mobilenet_v1")})
