"""GoogLeNet / Inception v1 (Szegedy et al. 2014) in torchvision's layout.

Conv-BN-ReLU units (BN eps 1e-3), inception modules of four branches (1x1; 1x1 ->
3x3; 1x1 -> "5x5"; 3x3 max pool -> 1x1) concatenated, ceil-mode pools, global
average pool, dropout 0.2, FC. Auxiliary heads after 4a and 4d (4x4 average pool,
1x1 conv 128, FC 1024, dropout 0.7, FC) exist only when `aux_logits=True` and are
used only in training.

torchvision's "5x5" branch is a 3x3 convolution (kept for its weights); that is the
default here, so the count matches its 6,624,904 parameters without aux heads
(13,004,888 with). `branch3_kernel=5` gives the paper's 5x5 (7,005,832 without aux).
Minimum input: 15 (the aux heads' adaptive 4x4 pool, like PyTorch's, also accepts
smaller maps).

`transform_input=True` maps an input normalised with ImageNet's mean and std to
(x - 0.5) / 0.5 per channel first, as torchvision's GoogLeNet does when built for its
ImageNet weights (which were trained on inputs so scaled).
"""

from __future__ import annotations

import functools

import jax.numpy as jnp
import numpy as np
from flax import nnx

from cnn_lab import nn, ops
from cnn_lab.models.common import (IMAGENET_MEAN, IMAGENET_STD, check_input_size,
                                   dropout)

EPS = 1e-3
MODULES = {  # name: (in, 1x1, 3x3 reduce, 3x3, 5x5 reduce, 5x5, pool proj)
    "3a": (192, 64, 96, 128, 16, 32, 32), "3b": (256, 128, 128, 192, 32, 96, 64),
    "4a": (480, 192, 96, 208, 16, 48, 64), "4b": (512, 160, 112, 224, 24, 64, 64),
    "4c": (512, 128, 128, 256, 24, 64, 64), "4d": (512, 112, 144, 288, 32, 64, 64),
    "4e": (528, 256, 160, 320, 32, 128, 128), "5a": (832, 256, 160, 320, 32, 128, 128),
    "5b": (832, 384, 192, 384, 48, 128, 128),
}


class Inception(nnx.Module):
  """Four parallel branches concatenated along channels."""

  def __init__(self, c_in, c1, c3r, c3, c5r, c5, pool_proj, *, branch3_kernel=3, **kw):
    unit = lambda i, o, k: nn.ConvBNAct(i, o, k, bn_epsilon=EPS, **kw)
    self.b1 = unit(c_in, c1, 1)
    self.b2 = nnx.List([unit(c_in, c3r, 1), unit(c3r, c3, 3)])
    self.b3 = nnx.List([unit(c_in, c5r, 1), unit(c5r, c5, branch3_kernel)])
    self.pool = nn.MaxPool(3, 1, padding=1, ceil_mode=True, impl=kw["impl"])
    self.b4 = unit(c_in, pool_proj, 1)

  def __call__(self, x, *, train: bool = False):
    seq = lambda units, y: units[1](units[0](y, train=train), train=train)
    return jnp.concatenate([self.b1(x, train=train), seq(self.b2, x), seq(self.b3, x),
                            self.b4(self.pool(x), train=train)], axis=-1)


class AuxHead(nnx.Module):
  """The training-only classifier on an intermediate feature map."""

  def __init__(self, c_in: int, num_classes: int, *, impl, dtype, rngs):
    self.pool = nn.AdaptiveAvgPool(4)
    self.conv = nn.ConvBNAct(c_in, 128, 1, bn_epsilon=EPS, impl=impl, dtype=dtype, rngs=rngs)
    self.fc1 = nn.Dense(128 * 16, 1024, dtype=dtype, rngs=rngs)
    self.fc2 = nn.Dense(1024, num_classes, dtype=dtype, rngs=rngs)
    self.drop = nnx.Dropout(0.7)

  def __call__(self, x, *, train: bool = False, rngs=None):
    x = nn.flatten(self.conv(self.pool(x), train=train))
    return self.fc2(dropout(self.drop, nnx.relu(self.fc1(x)), train, rngs))


class GoogLeNet(nnx.Module):
  """`x: [N, S, S, C]` -> logits `[N, K]`; in training with aux heads, a tuple
  `(logits, aux1, aux2)`."""

  def __init__(self, num_classes: int = 1000, *, in_channels: int = 3, input_size: int = 224,
               aux_logits: bool = False, branch3_kernel: int = 3, dropout_rate: float = 0.2,
               transform_input: bool = False, impl: str = "xla", dtype=None,
               rngs: nnx.Rngs):
    check_input_size(input_size, 15, "GoogLeNet (five ceil-mode halvings)")
    kw = dict(impl=impl, dtype=dtype, rngs=rngs)
    self.conv1 = nn.ConvBNAct(in_channels, 64, 7, stride=2, padding=3, bn_epsilon=EPS, **kw)
    self.conv2 = nn.ConvBNAct(64, 64, 1, bn_epsilon=EPS, **kw)
    self.conv3 = nn.ConvBNAct(64, 192, 3, bn_epsilon=EPS, **kw)
    self.pool3 = nn.MaxPool(3, 2, ceil_mode=True, impl=impl)
    self.pool2 = nn.MaxPool(2, 2, ceil_mode=True, impl=impl)
    self.inception = nnx.Dict({name: Inception(*spec, branch3_kernel=branch3_kernel, **kw)
                               for name, spec in MODULES.items()})
    self.aux1 = AuxHead(512, num_classes, **kw) if aux_logits else None
    self.aux2 = AuxHead(528, num_classes, **kw) if aux_logits else None
    self.drop = nnx.Dropout(dropout_rate) if dropout_rate else None
    self.fc = nn.Dense(1024, num_classes, dtype=dtype, rngs=rngs)
    self.transform_input = transform_input

  def __call__(self, x, *, train: bool = False, rngs=None):
    if self.transform_input:  # undo ImageNet's normalisation, then (x - 0.5) / 0.5
      std, mean = np.asarray(IMAGENET_STD), np.asarray(IMAGENET_MEAN)  # float64, as torch
      x = x * jnp.asarray(std / 0.5, x.dtype) + jnp.asarray((mean - 0.5) / 0.5, x.dtype)
    x = self.pool3(self.conv1(x, train=train))
    x = self.pool3(self.conv3(self.conv2(x, train=train), train=train))
    aux = []
    for name in MODULES:
      if name in ("4a", "5a"):
        x = (self.pool3 if name == "4a" else self.pool2)(x)
      x = self.inception[name](x, train=train)
      head = {"4a": self.aux1, "4d": self.aux2}.get(name)
      if head is not None and train:
        aux.append(head(x, train=train, rngs=rngs))
    logits = self.fc(dropout(self.drop, ops.global_avg_pool(x), train, rngs))
    return (logits, *aux) if aux else logits


PRESETS = {
    "googlenet": GoogLeNet,
    "googlenet_aux": functools.partial(GoogLeNet, aux_logits=True),
}
