"""He et al.'s CIFAR ResNet-20 on shapes, its plain twin, the deeper pair, and ResNet-18.

Command:
  python -m experiments.train --config=experiments/configs/resnet_shapes.py --workdir=/tmp/resnet_shapes

Trains `resnet20_cifar` (shortcut option A) on embedded `shapes` classification
(8 classes) at 32x32. Measured (seed 0, default config): test accuracy 0.992 in 208 s wall on 2 CPU cores.
Presets: :test (3 steps, for the tests); :gpu, :tpu (bfloat16, bigger batch; docs/scale.md); :plain (plain-20);
:resnet56 and :plain56 (the degradation experiment's deeper pair); :resnet18
(torchvision's ImageNet layout, at 64x64).
"""

from cnn_lab.train.configs import apply_presets
from experiments.configs.shapes_base import shapes_config, shapes_presets


def _model(name):
  def apply(c):
    c.model.name = name
  return apply


def _resnet18(c):
  c.model.name = "resnet18"
  c.dataset.name, c.dataset.image_size = "shapes/single_64", 64


PRESETS = shapes_presets(plain=_model("plain20_cifar"), resnet56=_model("resnet56_cifar"),
                         plain56=_model("plain56_cifar"), resnet18=_resnet18)


def get_config(arg=None):
  return apply_presets(shapes_config(model=dict(name="resnet20_cifar"), size=32), arg,
                       PRESETS)
