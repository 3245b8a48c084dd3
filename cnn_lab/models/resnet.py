"""ResNets: torchvision's ImageNet layout and the CIFAR networks of He et al. 2015, each with a
plain twin (the same network without shortcuts), for the degradation experiment.

ImageNet (torchvision): 7x7/2 conv, 3x3/2 max pool, four stages of basic (18, 34) or
bottleneck (50, 101, 152) blocks with stride on the 3x3 conv ("v1.5"), projection
shortcuts (1x1 conv + BN) where the shape changes, global average pool, FC.
ResNet-18 11,689,512 parameters, -34 21,797,672, -50 25,557,032, -101 44,549,160,
-152 60,192,808. Minimum input: 33 (five halvings must leave a pixel).

CIFAR (section 4.2 of the paper): 3x3 conv 16, three stages of n basic blocks with
16, 32, 64 filters (depth 6n + 2), global average pool, FC. Shortcut option A: the
identity, subsampled by the stride and zero-padded to the new width (no parameters);
option B: 1x1 projections where the shape changes. ResNet-20 (A) 269,722 parameters,
ResNet-56 (A) 853,018. Minimum input: 8.
"""

from __future__ import annotations

import functools

import jax.numpy as jnp
from flax import nnx

from cnn_lab import nn, ops
from cnn_lab.errors import fail
from cnn_lab.models.common import check_input_size


class BasicBlock(nnx.Module):
  """Two 3x3 conv-BN; `x + F(x)` then ReLU (or just `F(x)` then ReLU when plain)."""
  expansion = 1

  def __init__(self, in_features: int, features: int, stride: int = 1, *,
               shortcut: str = "B", residual: bool = True, impl="xla", dtype=None,
               kernel_init=nn.layers.default_kernel_init, rngs: nnx.Rngs):
    kw = dict(impl=impl, dtype=dtype, kernel_init=kernel_init, rngs=rngs)
    self.conv1 = nn.ConvBNAct(in_features, features, 3, stride=stride, **kw)
    self.conv2 = nn.ConvBNAct(features, features, 3, act="identity", **kw)
    self.shortcut = make_shortcut(in_features, features, stride, shortcut, residual, **kw)
    self.residual = residual

  def __call__(self, x, *, train: bool = False):
    y = self.conv2(self.conv1(x, train=train), train=train)
    if self.residual:
      y = y + apply_shortcut(self.shortcut, x, y.shape[-1], train)
    return ops.materialize(nnx.relu(y))  # computed once: ops.materialize


class Bottleneck(nnx.Module):
  """1x1 reduce, 3x3 (carrying the stride), 1x1 expand x4; shortcut added before the ReLU."""
  expansion = 4

  def __init__(self, in_features: int, features: int, stride: int = 1, *,
               shortcut: str = "B", residual: bool = True, impl="xla", dtype=None,
               rngs: nnx.Rngs):
    kw = dict(impl=impl, dtype=dtype, rngs=rngs)
    out = features * self.expansion
    self.conv1 = nn.ConvBNAct(in_features, features, 1, **kw)
    self.conv2 = nn.ConvBNAct(features, features, 3, stride=stride, **kw)
    self.conv3 = nn.ConvBNAct(features, out, 1, act="identity", **kw)
    self.shortcut = make_shortcut(in_features, out, stride, shortcut, residual, **kw)
    self.residual = residual

  def __call__(self, x, *, train: bool = False):
    y = self.conv3(self.conv2(self.conv1(x, train=train), train=train), train=train)
    if self.residual:
      y = y + apply_shortcut(self.shortcut, x, y.shape[-1], train)
    return ops.materialize(nnx.relu(y))  # computed once: ops.materialize


class ZeroPadShortcut(nnx.Module):
  """Option A: the identity subsampled by `stride`, zero channels appended (no parameters)."""

  def __init__(self, stride: int):
    self.stride = stride

  def __call__(self, x, features: int):
    x = x[:, ::self.stride, ::self.stride, :]
    extra = features - x.shape[-1]
    return jnp.pad(x, ((0, 0), (0, 0), (0, 0), (extra // 2, extra - extra // 2)))


def make_shortcut(in_features, out_features, stride, option, residual, **kw):
  """None for the identity; option "A" pads, "B" projects where the shape changes."""
  if not residual or (stride == 1 and in_features == out_features):
    return None
  if option == "A":
    return ZeroPadShortcut(stride)
  if option == "B":
    return nn.ConvBNAct(in_features, out_features, 1, stride=stride, padding=0,
                        act="identity", **kw)
  raise fail("shortcut", "'A' or 'B'", option)


def apply_shortcut(shortcut, x, features, train):
  if shortcut is None:
    return x
  if isinstance(shortcut, ZeroPadShortcut):
    return shortcut(x, features)
  return shortcut(x, train=train)


class ResNet(nnx.Module):
  """torchvision's ImageNet ResNet; `residual=False` gives the plain twin."""

  def __init__(self, block: str, stages, num_classes: int = 1000, *, in_channels: int = 3,
               input_size: int = 224, residual: bool = True, impl: str = "xla", dtype=None,
               rngs: nnx.Rngs):
    check_input_size(input_size, 33, "an ImageNet ResNet (five halvings)")
    block_cls = {"basic": BasicBlock, "bottleneck": Bottleneck}[block]
    kw = dict(impl=impl, dtype=dtype, rngs=rngs)
    self.stem = nn.ConvBNAct(in_channels, 64, 7, stride=2, padding=3, **kw)
    self.pool = nn.MaxPool(3, 2, padding=1, impl=impl)
    blocks, c = [], 64
    for i, (n, width) in enumerate(zip(stages, (64, 128, 256, 512))):
      for j in range(n):
        stride = 2 if i > 0 and j == 0 else 1
        blocks.append(block_cls(c, width, stride, residual=residual, **kw))
        c = width * block_cls.expansion
    self.blocks = nnx.List(blocks)
    self.fc = nn.Dense(c, num_classes, dtype=dtype, rngs=rngs)

  def __call__(self, x, *, train: bool = False, rngs=None):
    x = self.pool(self.stem(x, train=train))
    for block in self.blocks:
      x = block(x, train=train)
    return self.fc(ops.global_avg_pool(x))


class CifarResNet(nnx.Module):
  """He et al.'s CIFAR ResNet of depth 6n + 2 (20, 32, 44, 56, 110); plain when residual=False.

  `init`: "lecun" (flax's default) or "he", the paper's (N(0, 2 / fan-in), every kernel).
  On `shapes` plain-56's runs differ more with the seed than with this choice (README,
  "Plain versus residual")."""

  def __init__(self, depth: int = 20, num_classes: int = 10, *, in_channels: int = 3,
               input_size: int = 32, shortcut: str = "A", residual: bool = True,
               init: str = "lecun", impl: str = "xla", dtype=None, rngs: nnx.Rngs):
    if (depth - 2) % 6:
      raise fail("depth", "6n + 2 (20, 32, 44, 56, 110)", depth)
    check_input_size(input_size, 8, "a CIFAR ResNet (two halvings)")
    n = (depth - 2) // 6
    # torchvision has no CIFAR ResNet, so no "torchvision" choice (and no classifier for it)
    conv_init, fc_init = nn.init.family_inits(init, None, choices=("lecun", "he"))
    kw = dict(impl=impl, dtype=dtype, kernel_init=conv_init, rngs=rngs)
    self.stem = nn.ConvBNAct(in_channels, 16, 3, **kw)
    blocks, c = [], 16
    for i, width in enumerate((16, 32, 64)):
      for j in range(n):
        stride = 2 if i > 0 and j == 0 else 1
        blocks.append(BasicBlock(c, width, stride, shortcut=shortcut, residual=residual, **kw))
        c = width
    self.blocks = nnx.List(blocks)
    self.fc = nn.Dense(64, num_classes, kernel_init=fc_init, dtype=dtype, rngs=rngs)

  def __call__(self, x, *, train: bool = False, rngs=None):
    x = self.stem(x, train=train)
    for block in self.blocks:
      x = block(x, train=train)
    return self.fc(ops.global_avg_pool(x))


IMAGENET_DEPTHS = {18: ("basic", (2, 2, 2, 2)), 34: ("basic", (3, 4, 6, 3)),
                   50: ("bottleneck", (3, 4, 6, 3)), 101: ("bottleneck", (3, 4, 23, 3)),
                   152: ("bottleneck", (3, 8, 36, 3))}
CIFAR_DEPTHS = (20, 32, 44, 56, 110)


def _imagenet(depth, residual):
  return functools.partial(ResNet, *IMAGENET_DEPTHS[depth], residual=residual)


def _cifar(depth, residual, shortcut="A"):
  return functools.partial(CifarResNet, depth, residual=residual, shortcut=shortcut)


PRESETS = {
    **{f"resnet{d}": _imagenet(d, True) for d in IMAGENET_DEPTHS},
    **{f"plain{d}": _imagenet(d, False) for d in IMAGENET_DEPTHS},
    **{f"resnet{d}_cifar": _cifar(d, True) for d in CIFAR_DEPTHS},
    **{f"resnet{d}_cifar_b": _cifar(d, True, "B") for d in CIFAR_DEPTHS},
    **{f"plain{d}_cifar": _cifar(d, False) for d in CIFAR_DEPTHS},
}
