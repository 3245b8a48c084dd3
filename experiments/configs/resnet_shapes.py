"""He et al.'s CIFAR ResNet-20 on shapes, its plain twin, the deeper pair, and ResNet-18.

Command:
  python -m experiments.train --config=experiments/configs/resnet_shapes.py --workdir=/tmp/resnet_shapes

Trains `resnet20_cifar` (shortcut option A) on embedded `shapes` classification
(8 classes) at 32x32. Measured (default config, seeds 0, 1, 2, `experiments.seeds`): test
accuracy 0.990, 0.992, 0.988 (mean 0.990 +- 0.002), 162-231 s wall a run on 2 CPU cores.
Presets: :test (3 steps, for the tests); :gpu, :tpu (bfloat16, bigger batch; docs/scale.md); :plain (plain-20);
:resnet56 and :plain56 (the degradation experiment's deeper pair); :resnet18
(torchvision's ImageNet layout, at 64x64); :paper (He et al.'s SGD recipe, for
`experiments.degradation --recipe=paper`; combine: `:plain56,paper`; at 4 epochs it
leaves the 56-layer networks near chance, see docs/degradation.md); :augment (the
paper's translations and flips, `experiments.degradation --augment`).
`--config.model.init=he`: the paper's initialisation (He et al. 2015) instead of flax's
lecun, with which the results above were measured.
"""

from cnn_lab.train.configs import apply_presets
from experiments.configs.shapes_base import shapes_config, shapes_presets


def _model(name):
  def apply(c):
    c.model.name = name
  return apply


def _paper(c):
  """He et al.'s CIFAR optimisation (Section 4.2), scaled to the run's length: SGD with
  momentum 0.9, weight decay 1e-4 (L2), batch 128, learning rate 0.1 divided by 10 at
  half and three quarters of training (the paper's 32k and 48k of 64k iterations);
  no gradient clipping, no warmup (the paper warms up only ResNet-110). The paper's
  initialisation is a model option: `--config.model.init=he`."""
  c.optimizer.update(name="momentum", learning_rate=0.1, momentum=0.9, weight_decay=1e-4,
                     grad_clip_norm=0.0)
  c.schedule.update(name="piecewise", boundaries=(0.5, 0.75), scales=(0.1, 0.1))
  c.batch_size = 128


def _augment(c):
  """He et al.'s CIFAR augmentation (Section 4.2): random translations of up to 4 pixels
  (the paper pads 4 pixels and crops 32x32, whole pixels; here uniform and bilinear) and
  random left-right flips (exact for shapes' classes)."""
  c.augment.update(max_shift=4.0, hflip=True)


def _resnet18(c):
  c.model.name = "resnet18"
  c.dataset.name, c.dataset.image_size = "shapes/single_64", 64


PRESETS = shapes_presets(plain=_model("plain20_cifar"), resnet56=_model("resnet56_cifar"),
                         plain56=_model("plain56_cifar"), resnet18=_resnet18, paper=_paper,
                         augment=_augment)


def get_config(arg=None):
  return apply_presets(shapes_config(model=dict(name="resnet20_cifar"), size=32), arg,
                       PRESETS)
