"""MobileNet v1 (Howard et al. 2017) and MobileNetV2 (Sandler et al. 2018).

v1: 3x3/2 conv 32, then 13 depthwise-separable blocks (3x3 depthwise conv-BN-ReLU,
1x1 pointwise conv-BN-ReLU), global average pool, FC. Width multiplier `alpha`
thins every layer; the resolution multiplier rho is the input size (224 * rho).
4,231,976 parameters at alpha = 1 (Keras' trainable count).

V2 (torchvision): 3x3/2 conv 32, inverted residual blocks (1x1 expansion by t,
3x3 depthwise, linear 1x1 projection; ReLU6; a shortcut when the shape allows),
1x1 conv 1280, global average pool, dropout 0.2, FC. 3,504,872 parameters.
Channels are rounded to multiples of 8. Minimum input: 32 (five halvings).
`zero_init_residual` starts each block with a shortcut as the identity (the last
BatchNorm's scale at 0), as torchvision's ResNet option of that name; off by default.
"""

from __future__ import annotations

import functools

from flax import nnx

from cnn_lab import nn, ops
from cnn_lab.models.common import check_input_size, dropout

V1_BLOCKS = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1), (512, 1),
             (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1))
V2_SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
               (6, 160, 3, 2), (6, 320, 1, 1))  # expansion t, channels c, repeats n, stride s


class MobileNetV1(nnx.Module):
  def __init__(self, num_classes: int = 1000, *, alpha: float = 1.0, in_channels: int = 3,
               input_size: int = 224, dropout_rate: float = 0.001, impl: str = "xla",
               init: str = "torchvision", dtype=None, rngs: nnx.Rngs):
    check_input_size(input_size, 32, "MobileNet v1 (five halvings)")
    conv_init, fc_init = nn.init.family_inits(init, nn.init.normal(0.01))
    kw = dict(impl=impl, kernel_init=conv_init, dtype=dtype, rngs=rngs)
    width = lambda c: int(c * alpha)
    self.stem = nn.ConvBNAct(in_channels, width(32), 3, stride=2, **kw)
    layers, c = [], width(32)
    for out, stride in V1_BLOCKS:
      layers.append(nn.ConvBNAct(c, c, 3, stride=stride, groups=c, **kw))  # depthwise
      layers.append(nn.ConvBNAct(c, width(out), 1, **kw))  # pointwise
      c = width(out)
    self.layers = nnx.List(layers)
    self.drop = nnx.Dropout(dropout_rate) if dropout_rate else None
    self.fc = nn.Dense(c, num_classes, kernel_init=fc_init, dtype=dtype, rngs=rngs)

  def __call__(self, x, *, train: bool = False, rngs=None):
    x = self.stem(x, train=train)
    for layer in self.layers:
      x = layer(x, train=train)
    return self.fc(dropout(self.drop, ops.global_avg_pool(x), train, rngs))


class InvertedResidual(nnx.Module):
  """1x1 expand (t > 1) -> 3x3 depthwise (stride) -> 1x1 linear projection; + x if shapes match."""

  def __init__(self, c_in: int, c_out: int, stride: int, expansion: int, *,
               zero_init_residual: bool = False, **kw):
    hidden = c_in * expansion
    self.expand = nn.ConvBNAct(c_in, hidden, 1, act="relu6", **kw) if expansion != 1 else None
    self.depthwise = nn.ConvBNAct(hidden, hidden, 3, stride=stride, groups=hidden,
                                  act="relu6", **kw)
    self.project = nn.ConvBNAct(hidden, c_out, 1, act="identity", **kw)
    self.use_residual = stride == 1 and c_in == c_out
    if zero_init_residual and self.use_residual:
      nn.zero_last_scale(self.project)

  def __call__(self, x, *, train: bool = False):
    y = x if self.expand is None else self.expand(x, train=train)
    y = self.project(self.depthwise(y, train=train), train=train)
    return ops.materialize(x + y) if self.use_residual else y  # computed once: ops.materialize


class MobileNetV2(nnx.Module):
  def __init__(self, num_classes: int = 1000, *, width: float = 1.0, in_channels: int = 3,
               input_size: int = 224, dropout_rate: float = 0.2, impl: str = "xla",
               zero_init_residual: bool = False, init: str = "torchvision", dtype=None,
               rngs: nnx.Rngs):
    check_input_size(input_size, 32, "MobileNetV2 (five halvings)")
    conv_init, fc_init = nn.init.family_inits(init, nn.init.normal(0.01))
    kw = dict(impl=impl, kernel_init=conv_init, dtype=dtype, rngs=rngs)
    c = nn.make_divisible(32 * width)
    self.last_channels = nn.make_divisible(1280 * max(1.0, width))
    self.stem = nn.ConvBNAct(in_channels, c, 3, stride=2, act="relu6", **kw)
    blocks = []
    for t, channels, n, s in V2_SETTINGS:
      out = nn.make_divisible(channels * width)
      for i in range(n):
        blocks.append(InvertedResidual(c, out, s if i == 0 else 1, t,
                                       zero_init_residual=zero_init_residual, **kw))
        c = out
    self.blocks = nnx.List(blocks)
    self.head = nn.ConvBNAct(c, self.last_channels, 1, act="relu6", **kw)
    self.drop = nnx.Dropout(dropout_rate) if dropout_rate else None
    self.fc = nn.Dense(self.last_channels, num_classes, kernel_init=fc_init, dtype=dtype,
                       rngs=rngs)

  def features(self, x, *, train: bool = False):
    """The feature map `[N, S/32, S/32, 1280]` before pooling (the transfer-learning base)."""
    x = self.stem(x, train=train)
    for block in self.blocks:
      x = block(x, train=train)
    return self.head(x, train=train)

  def __call__(self, x, *, train: bool = False, rngs=None):
    x = ops.global_avg_pool(self.features(x, train=train))
    return self.fc(dropout(self.drop, x, train, rngs))


PRESETS = {
    "mobilenet_v1": MobileNetV1,
    "mobilenet_v1_0.5": functools.partial(MobileNetV1, alpha=0.5),
    "mobilenet_v1_0.25": functools.partial(MobileNetV1, alpha=0.25),
    "mobilenet_v2": MobileNetV2,
    "mobilenet_v2_0.5": functools.partial(MobileNetV2, width=0.5),
}
