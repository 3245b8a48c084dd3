"""Transfer learning with torchvision's ImageNet MobileNetV2 on few-shot `shapes` (96x96).

Command (one variant):
  python -m experiments.train --config=experiments/configs/transfer_shapes.py:finetune --workdir=/tmp/tl
All variants and shot counts, one table: `python -m experiments.transfer --workdir=/tmp/transfer`.

The course's recipe: the ImageNet base (BatchNorm statistics frozen), global average
pooling, dropout 0.2, a new dense head; `dataset.train_per_class` labelled images per
class (the same draw for every variant), all 500 test images of `shapes/single_128`
resized to 96x96 and normalised as torchvision's weights expect.
Variants (presets):
  :linear    (default) the base frozen, the head alone learns;
  :finetune  the head alone for the first half, then layers 12..18 of the base (its top
             five inverted-residual blocks and 1x1 conv) join at a tenth of the learning rate;
  :scratch   the same network from random weights, everything learning (BatchNorm too).
  :test      3 steps at 32x32, for the tests;  :flowers  catalog `tf_flowers` by name.
Measured (seed 0, 300 steps, 2 CPU cores; test accuracy, 8 classes) at 5 / 10 / 20 images
per class: linear 0.564 / 0.622 / 0.800, finetune 0.616 / 0.678 / 0.864, scratch 0.164 /
0.142 / 0.146 (chance 0.125).
"""

from cnn_lab.models.common import IMAGENET_MEAN, IMAGENET_STD
from cnn_lab.train.configs import apply_presets
from experiments.configs.shapes_base import shapes_config, shapes_presets

FINE_TUNE_AT = 12  # base layers: 0 stem, 1..17 blocks, 18 the 1x1 conv to 1280
HEAD = (r"^head\.", 1.0)


def _top_of_base(first_layer: int) -> str:
  blocks = "|".join(str(b) for b in range(first_layer - 1, 17))
  return rf"^base\.(blocks\.({blocks})\.|head\.)"


def _finetune(c):
  c.model.trainable_from = FINE_TUNE_AT
  c.optimizer.param_groups = (HEAD, (_top_of_base(FINE_TUNE_AT), 0.1, 0.5))


def _scratch(c):
  c.model.update(weights="", trainable_from=0, freeze_bn=False)
  c.optimizer.param_groups = ((r".", 1.0),)


def _flowers(c):
  c.dataset.update(name="tf_flowers", cache=False, train_per_class=0, image_size=160,
                   eval_split="")  # its own splits, also after :test
  c.num_train_steps = 2000


def _test(c):  # the shapes :test, without the weights fetch, on 2 images a class
  PRESETS_BASE["test"](c)
  c.model.weights = ""
  c.dataset.train_per_class = 2


PRESETS_BASE = shapes_presets()
PRESETS = {**PRESETS_BASE, "test": _test, "linear": lambda c: None, "finetune": _finetune,
           "scratch": _scratch, "flowers": _flowers}


def get_config(arg=None):
  c = shapes_config(
      size=96, batch_size=32,
      model=dict(name="mobilenet_v2_transfer", weights="imagenet", trainable_from=19,
                 freeze_bn=True, dropout_rate=0.2,
                 impl="scratch"),  # XLA's depthwise convolution is slow on CPU (README)
      dataset=dict(name="shapes/single_128", mean=IMAGENET_MEAN, std=IMAGENET_STD,
                   train_per_class=10),
      optimizer=dict(name="adam", learning_rate=1e-3, weight_decay=0.0, grad_clip_norm=0.0,
                     param_groups=(HEAD,)),
      schedule=dict(name="cosine", warmup_steps=0),
      num_train_steps=300, eval_every_steps=300, checkpoint_every_steps=300)
  return apply_presets(c, arg, PRESETS)
