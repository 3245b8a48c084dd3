"""EfficientNet B0-B7 (Tan & Le 2019) by compound scaling of B0, in torchvision's layout.

B0: 3x3/2 stem conv 32, seven stages of MBConv blocks (1x1 expansion, kxk depthwise,
squeeze-and-excitation to a quarter of the block's input channels, linear 1x1
projection; SiLU; stochastic depth rising linearly to 0.2 over the blocks; a
shortcut when the shape allows), 1x1 head conv to 4x the last stage, global
average pool, dropout, FC. Channels scale by the width coefficient and round to
multiples of 8; repeats scale by the depth coefficient and round up.

Parameters: B0 5,288,548 ... B7 66,347,960 (torchvision). Minimum input: 32.
`zero_init_residual` starts each block with a shortcut as the identity (the last
BatchNorm's scale at 0), as torchvision's ResNet option of that name; off by default.
`classifier_init`: "torchvision" (default) draws the classifier from U(+-1 / sqrt(classes)),
as torchvision does; "fan_in" from U(+-1 / sqrt(features)), PyTorch's `nn.Linear` bound,
which is what torchvision's rule gives at ImageNet's 1,000 classes (+-0.032 against
+-0.028 for B0's 1,280 features). For few classes the first is wide: +-0.35 at 8 classes,
where the untrained B0 starts at loss ~3.5 on `shapes` against chance's 2.08.
"""

from __future__ import annotations

import functools
import math

from flax import nnx

from cnn_lab import nn, ops
from cnn_lab.errors import fail
from cnn_lab.models.common import check_input_size, dropout

# expansion, kernel, stride, in, out, repeats
B0_STAGES = ((1, 3, 1, 32, 16, 1), (6, 3, 2, 16, 24, 2), (6, 5, 2, 24, 40, 2),
             (6, 3, 2, 40, 80, 3), (6, 5, 1, 80, 112, 3), (6, 5, 2, 112, 192, 4),
             (6, 3, 1, 192, 320, 1))
# width, depth, resolution, dropout (the paper's Table / torchvision)
SCALING = {"b0": (1.0, 1.0, 224, 0.2), "b1": (1.0, 1.1, 240, 0.2), "b2": (1.1, 1.2, 260, 0.3),
           "b3": (1.2, 1.4, 300, 0.3), "b4": (1.4, 1.8, 380, 0.4), "b5": (1.6, 2.2, 456, 0.4),
           "b6": (1.8, 2.6, 528, 0.5), "b7": (2.0, 3.1, 600, 0.5)}


# BatchNorm as torchvision builds each: its defaults (epsilon 1e-5, momentum 0.1) for
# B0-B4, the TensorFlow original's (1e-3, 0.01) for B5-B7. Momentum here is flax's,
# 1 - PyTorch's.
ORIGINAL_BN = ("b5", "b6", "b7")
BN_EPSILON = {name: 1e-3 if name in ORIGINAL_BN else 1e-5 for name in SCALING}
BN_MOMENTUM = {name: 0.99 if name in ORIGINAL_BN else 0.9 for name in SCALING}


def compound_coefficients(phi: float, alpha: float = 1.2, beta: float = 1.1,
                          gamma: float = 1.15) -> dict:
  """Depth alpha^phi, width beta^phi, resolution gamma^phi (x 224), for any phi.

  The paper's grid search fixed alpha * beta^2 * gamma^2 ~= 2, so FLOPs grow ~2^phi.
  """
  return {"depth": alpha ** phi, "width": beta ** phi, "resolution": gamma ** phi,
          "input_size": int(round(224 * gamma ** phi)),
          "flops_factor": (alpha * beta ** 2 * gamma ** 2) ** phi}


class MBConv(nnx.Module):
  def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, expansion: int,
               drop_rate: float, *, zero_init_residual: bool = False, **kw):
    hidden = nn.make_divisible(c_in * expansion)
    self.expand = nn.ConvBNAct(c_in, hidden, 1, act="swish", **kw) \
        if hidden != c_in else None
    self.depthwise = nn.ConvBNAct(hidden, hidden, kernel, stride=stride, groups=hidden,
                                  act="swish", **kw)
    self.se = nn.SqueezeExcite(hidden, max(1, c_in // 4), kernel_init=kw["kernel_init"],
                               dtype=kw["dtype"], rngs=kw["rngs"])
    self.project = nn.ConvBNAct(hidden, c_out, 1, act="identity", **kw)
    self.use_residual = stride == 1 and c_in == c_out
    if zero_init_residual and self.use_residual:
      nn.zero_last_scale(self.project)
    self.drop_path = nn.StochasticDepth(drop_rate)

  def __call__(self, x, *, train: bool = False, rngs=None):
    y = x if self.expand is None else self.expand(x, train=train)
    y = self.project(self.se(self.depthwise(y, train=train)), train=train)
    if self.use_residual:  # the stream computed once: ops.materialize
      return ops.materialize(x + self.drop_path(y, train=train, rngs=rngs))
    return y


class EfficientNet(nnx.Module):
  def __init__(self, num_classes: int = 1000, *, width: float = 1.0, depth: float = 1.0,
               dropout_rate: float = 0.2, stochastic_depth: float = 0.2, in_channels: int = 3,
               input_size: int = 224, bn_epsilon: float = 1e-5, bn_momentum: float = 0.9,
               impl: str = "xla", zero_init_residual: bool = False, init: str = "torchvision",
               classifier_init: str = "torchvision", dtype=None, rngs: nnx.Rngs):
    check_input_size(input_size, 32, "EfficientNet (five halvings)")
    channels = lambda c: nn.make_divisible(c * width)
    stages = [(t, k, s, channels(i), channels(o), int(math.ceil(n * depth)))
              for t, k, s, i, o, n in B0_STAGES]
    last = 4 * stages[-1][4]  # the head's width, the classifier's fan-in
    bound = 1 / math.sqrt(_classifier_fan(classifier_init, num_classes, last))
    conv_init, fc_init = nn.init.family_inits(init, nn.init.symmetric_uniform(bound))
    kw = dict(bn_epsilon=bn_epsilon, bn_momentum=bn_momentum, impl=impl,
              kernel_init=conv_init, dtype=dtype, rngs=rngs)
    total = sum(n for *_, n in stages)
    self.stem = nn.ConvBNAct(in_channels, stages[0][3], 3, stride=2, act="swish", **kw)
    blocks, index = [], 0
    for t, k, s, c_in, c_out, n in stages:
      for i in range(n):
        blocks.append(MBConv(c_in if i == 0 else c_out, c_out, k, s if i == 0 else 1, t,
                             stochastic_depth * index / total,
                             zero_init_residual=zero_init_residual, **kw))
        index += 1
    self.blocks = nnx.List(blocks)
    self.head = nn.ConvBNAct(stages[-1][4], last, 1, act="swish", **kw)
    self.drop = nnx.Dropout(dropout_rate) if dropout_rate else None
    self.fc = nn.Dense(last, num_classes, kernel_init=fc_init, dtype=dtype, rngs=rngs)

  def __call__(self, x, *, train: bool = False, rngs=None):
    x = self.stem(x, train=train)
    for block in self.blocks:
      x = block(x, train=train, rngs=rngs)
    x = ops.global_avg_pool(self.head(x, train=train))
    return self.fc(dropout(self.drop, x, train, rngs))


CLASSIFIER_INITS = ("torchvision", "fan_in")


def _classifier_fan(rule: str, num_classes: int, features: int) -> int:
  """The n of the classifier's U(+-1 / sqrt(n)) under `classifier_init` = `rule`."""
  if rule not in CLASSIFIER_INITS:
    raise fail("classifier_init", f"one of {CLASSIFIER_INITS}", rule)
  return num_classes if rule == "torchvision" else features


def _preset(name):
  width, depth, resolution, rate = SCALING[name]
  return functools.partial(EfficientNet, width=width, depth=depth, dropout_rate=rate,
                           input_size=resolution, bn_epsilon=BN_EPSILON[name],
                           bn_momentum=BN_MOMENTUM[name])


PRESETS = {f"efficientnet_{name}": _preset(name) for name in SCALING}
