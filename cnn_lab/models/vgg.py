"""VGG-11/13/16/19 (Simonyan & Zisserman 2014, configurations A, B, D, E), with and without
BatchNorm, in torchvision's layout: 3x3 convs (padding 1) with bias, 2x2 max pools,
adaptive average pool to 7x7, FC 4096 - 4096 - K with dropout 0.5.

VGG-16: 138,357,544 parameters; with BatchNorm 138,365,992. Minimum input: 32.

`head="cifar"` replaces the 7x7x512 -> 4096 -> 4096 classifier with global average
pooling and one FC (the usual VGG for 32x32 images: VGG-11-BN then has 9.2M
parameters instead of 129M, nearly all of which sat in the classifier).
"""

from __future__ import annotations

import functools

from flax import nnx

from cnn_lab import nn, ops
from cnn_lab.errors import fail
from cnn_lab.models.common import check_input_size, dropout

CONFIGS = {
    11: (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    13: (64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    16: (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"),
    19: (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
         512, 512, 512, 512, "M"),
}


class VGG(nnx.Module):
  """`x: [N, S, S, C]` -> logits `[N, K]`."""

  def __init__(self, depth: int = 16, num_classes: int = 1000, *, batch_norm: bool = False,
               head: str = "imagenet", in_channels: int = 3, input_size: int = 224,
               dropout_rate: float = 0.5, impl: str = "xla", dtype=None, rngs: nnx.Rngs):
    if head not in ("imagenet", "cifar"):
      raise fail("head", "'imagenet' or 'cifar'", head)
    check_input_size(input_size, 32, f"VGG-{depth} (five 2x2 poolings)")
    layers, c = [], in_channels
    for v in CONFIGS[depth]:
      if v == "M":
        layers.append(nn.MaxPool(2, impl=impl))
        continue
      layers.append(nn.Conv(c, v, 3, padding=1, impl=impl, dtype=dtype, rngs=rngs))
      if batch_norm:
        layers.append(nn.BatchNorm(v, dtype=dtype, rngs=rngs))
      layers.append(nnx.relu)
      c = v
    self.features = nnx.List(layers)
    self.head = head
    if head == "imagenet":
      self.avgpool = nn.AdaptiveAvgPool(7)
      self.fc6 = nn.Dense(512 * 7 * 7, 4096, dtype=dtype, rngs=rngs)
      self.fc7 = nn.Dense(4096, 4096, dtype=dtype, rngs=rngs)
    self.fc8 = nn.Dense(4096 if head == "imagenet" else 512, num_classes, dtype=dtype,
                        rngs=rngs)
    self.drop = nnx.Dropout(dropout_rate) if dropout_rate else None

  def __call__(self, x, *, train: bool = False, rngs=None):
    for layer in self.features:
      x = layer(x, train=train) if isinstance(layer, nn.BatchNorm) else layer(x)
    if self.head == "cifar":
      return self.fc8(dropout(self.drop, ops.global_avg_pool(x), train, rngs))
    x = nn.flatten(self.avgpool(x))
    x = dropout(self.drop, nnx.relu(self.fc6(x)), train, rngs)
    x = dropout(self.drop, nnx.relu(self.fc7(x)), train, rngs)
    return self.fc8(x)


PRESETS = {
    f"vgg{d}{suffix}": functools.partial(VGG, d, batch_norm=bn)
    for d in CONFIGS for suffix, bn in (("", False), ("_bn", True))
}
