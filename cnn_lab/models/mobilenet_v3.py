"""MobileNetV3 Large and Small (Howard et al. 2019), in torchvision's layout.

A 3x3/2 stem conv 16 with h-swish, then inverted residual blocks from the NAS-found
tables below (1x1 expansion when it widens, kxk depthwise, optional squeeze-and-excite
to a quarter of the expanded width (rounded to 8) with ReLU and a hard-sigmoid gate,
linear 1x1 projection; ReLU or h-swish; a shortcut when the shape allows), a 1x1 conv
to 6x the last block's width with h-swish, global average pool, then a two-layer
classifier (1280 or 1024 units, h-swish, dropout 0.2). BatchNorm epsilon 1e-3 as
torchvision's weights were trained with.

Parameters: Large 5,483,032, Small 2,542,856 (torchvision). Minimum input: 32.
"""

from __future__ import annotations

import functools

from flax import nnx

from cnn_lab import nn, ops
from cnn_lab.models.common import check_input_size, dropout

# kernel, expanded width, output width, squeeze-and-excite, activation, stride
LARGE = ((3, 16, 16, False, "relu", 1), (3, 64, 24, False, "relu", 2),
         (3, 72, 24, False, "relu", 1), (5, 72, 40, True, "relu", 2),
         (5, 120, 40, True, "relu", 1), (5, 120, 40, True, "relu", 1),
         (3, 240, 80, False, "hardswish", 2), (3, 200, 80, False, "hardswish", 1),
         (3, 184, 80, False, "hardswish", 1), (3, 184, 80, False, "hardswish", 1),
         (3, 480, 112, True, "hardswish", 1), (3, 672, 112, True, "hardswish", 1),
         (5, 672, 160, True, "hardswish", 2), (5, 960, 160, True, "hardswish", 1),
         (5, 960, 160, True, "hardswish", 1))
SMALL = ((3, 16, 16, True, "relu", 2), (3, 72, 24, False, "relu", 2),
         (3, 88, 24, False, "relu", 1), (5, 96, 40, True, "hardswish", 2),
         (5, 240, 40, True, "hardswish", 1), (5, 240, 40, True, "hardswish", 1),
         (5, 120, 48, True, "hardswish", 1), (5, 144, 48, True, "hardswish", 1),
         (5, 288, 96, True, "hardswish", 2), (5, 576, 96, True, "hardswish", 1),
         (5, 576, 96, True, "hardswish", 1))
# torchvision's BatchNorm2d(eps=0.001, momentum=0.01): flax's momentum is 1 - PyTorch's
BN_EPSILON, BN_MOMENTUM = 1e-3, 0.99


class Bneck(nnx.Module):
  """MobileNetV3's block: expand (if wider) -> depthwise -> [SE] -> linear project; + x."""

  def __init__(self, c_in: int, kernel: int, expanded: int, c_out: int, se: bool, act: str,
               stride: int, **kw):
    self.expand = nn.ConvBNAct(c_in, expanded, 1, act=act, **kw) if expanded != c_in \
        else None
    self.depthwise = nn.ConvBNAct(expanded, expanded, kernel, stride=stride, groups=expanded,
                                  act=act, **kw)
    self.se = nn.SqueezeExcite(expanded, nn.make_divisible(expanded // 4), act="relu",
                               gate="hardsigmoid", kernel_init=kw["kernel_init"],
                               dtype=kw["dtype"], rngs=kw["rngs"]) \
        if se else None
    self.project = nn.ConvBNAct(expanded, c_out, 1, act="identity", **kw)
    self.use_residual = stride == 1 and c_in == c_out

  def __call__(self, x, *, train: bool = False):
    y = x if self.expand is None else self.expand(x, train=train)
    y = self.depthwise(y, train=train)
    y = self.project(y if self.se is None else self.se(y), train=train)
    return ops.materialize(x + y) if self.use_residual else y  # computed once: ops.materialize


class MobileNetV3(nnx.Module):
  def __init__(self, num_classes: int = 1000, *, blocks=LARGE, last_channels: int = 1280,
               in_channels: int = 3, input_size: int = 224, dropout_rate: float = 0.2,
               impl: str = "xla", init: str = "torchvision", dtype=None, rngs: nnx.Rngs):
    check_input_size(input_size, 32, "MobileNetV3 (five halvings)")
    conv_init, fc_init = nn.init.family_inits(init, nn.init.normal(0.01))
    kw = dict(bn_epsilon=BN_EPSILON, bn_momentum=BN_MOMENTUM, impl=impl, kernel_init=conv_init,
              dtype=dtype, rngs=rngs)
    self.stem = nn.ConvBNAct(in_channels, 16, 3, stride=2, act="hardswish", **kw)
    layers, c = [], 16
    for kernel, expanded, out, se, act, stride in blocks:
      layers.append(Bneck(c, kernel, expanded, out, se, act, stride, **kw))
      c = out
    self.blocks = nnx.List(layers)
    self.head = nn.ConvBNAct(c, 6 * c, 1, act="hardswish", **kw)
    self.hidden = nn.Dense(6 * c, last_channels, kernel_init=fc_init, dtype=dtype, rngs=rngs)
    self.drop = nnx.Dropout(dropout_rate) if dropout_rate else None
    self.fc = nn.Dense(last_channels, num_classes, kernel_init=fc_init, dtype=dtype,
                       rngs=rngs)

  def features(self, x, *, train: bool = False):
    """The feature map `[N, S/32, S/32, 6 * last block width]` before pooling."""
    x = self.stem(x, train=train)
    for block in self.blocks:
      x = block(x, train=train)
    return self.head(x, train=train)

  def __call__(self, x, *, train: bool = False, rngs=None):
    x = nn.activation("hardswish")(self.hidden(ops.global_avg_pool(self.features(x,
                                                                                 train=train))))
    return self.fc(dropout(self.drop, x, train, rngs))


PRESETS = {
    "mobilenet_v3_large": MobileNetV3,
    "mobilenet_v3_small": functools.partial(MobileNetV3, blocks=SMALL, last_channels=1024),
}
