"""Transfer learning on MobileNetV2 (the course's recipe).

`MobileNetV2Transfer`: a MobileNetV2 base, global average pooling, dropout 0.2 and a
new dense head. The model is built with random values; the code that builds it loads
torchvision's ImageNet weights into the base it names in `pretrained_base`
(`cnn_lab.pretrained.imagenet.load_pretrained`, from the config's `model.weights`).
The base's layers are numbered 0 (stem), 1..17
(the inverted residual blocks) and 18 (the 1x1 conv to 1280); gradients stop below
`trainable_from` (19: the base is frozen, only the head learns), so the backward pass
skips the frozen layers. With `freeze_bn` the base's BatchNorm layers always use
their stored statistics (the course's `base_model(x, training=False)`).
Which parameters move, and at what learning rate, is the optimizer's
`param_groups` (see `experiments/configs/transfer_shapes.py`).
"""

from __future__ import annotations

import jax
from flax import nnx

from cnn_lab import nn, ops
from cnn_lab.errors import fail
from cnn_lab.models.common import check_input_size, dropout
from cnn_lab.models.mobilenet import MobileNetV2

BASE_LAYERS = 19


class MobileNetV2Transfer(nnx.Module):
  pretrained_base = ("base", "mobilenet_v2")  # (attribute, torchvision architecture)

  def __init__(self, num_classes: int = 2, *, trainable_from: int = BASE_LAYERS,
               freeze_bn: bool = True, dropout_rate: float = 0.2, in_channels: int = 3,
               input_size: int = 160,
               impl: str = "xla", dtype=None, rngs: nnx.Rngs):
    check_input_size(input_size, 32, "MobileNetV2 (five halvings)")
    if not 0 <= trainable_from <= BASE_LAYERS:
      raise fail("trainable_from", f"a layer index in [0, {BASE_LAYERS}]", trainable_from)
    self.base = MobileNetV2(1000, in_channels=in_channels, input_size=input_size, impl=impl,
                            dtype=dtype, rngs=rngs)
    del self.base.fc, self.base.drop  # the ImageNet classifier is replaced
    self.drop = nnx.Dropout(dropout_rate) if dropout_rate else None
    self.head = nn.Dense(self.base.last_channels, num_classes, dtype=dtype, rngs=rngs)
    self.trainable_from, self.freeze_bn = trainable_from, freeze_bn

  def features(self, x, *, train: bool = False):
    """`[N, S, S, C]` -> `[N, S/32, S/32, 1280]`, frozen below `trainable_from`."""
    base_train = train and not self.freeze_bn
    layers = [self.base.stem, *self.base.blocks, self.base.head]
    for i, layer in enumerate(layers):
      x = layer(x, train=base_train)
      if i + 1 == self.trainable_from:
        x = jax.lax.stop_gradient(x)  # nothing below learns: skip its backward pass
    return x

  def __call__(self, x, *, train: bool = False, rngs=None):
    x = ops.global_avg_pool(self.features(x, train=train))
    return self.head(dropout(self.drop, x, train, rngs))


PRESETS = {"mobilenet_v2_transfer": MobileNetV2Transfer}
