"""Blocks shared by model families: conv-BN-activation, squeeze-and-excitation, stochastic depth."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from cnn_lab import ops
from cnn_lab.errors import fail
from cnn_lab.nn.layers import BatchNorm, Conv, activation, default_kernel_init


def make_divisible(v: float, divisor: int = 8, min_value: int | None = None) -> int:
  """Rounds channels to a multiple of `divisor`, never below 90% of `v` (MobileNet, EfficientNet)."""
  min_value = min_value or divisor
  new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
  return new_v + divisor if new_v < 0.9 * v else new_v


class ConvBNAct(nnx.Module):
  """conv (no bias) -> BatchNorm -> activation; `groups=in_features` makes it depthwise.

  `padding` defaults to (k - 1) // 2 on each side (PyTorch's "same" for odd k);
  `bn_momentum` is flax's (PyTorch's momentum m is 1 - m here: 0.9 is PyTorch's 0.1).
  """

  def __init__(self, in_features: int, out_features: int, kernel_size: int = 3, *,
               stride: int = 1, groups: int = 1, padding=None, act: str = "relu",
               bn_epsilon: float = 1e-5, bn_momentum: float = 0.9, impl: str = "xla",
               kernel_init=default_kernel_init, dtype=None, rngs: nnx.Rngs):
    padding = (kernel_size - 1) // 2 if padding is None else padding
    self.conv = Conv(in_features, out_features, kernel_size, stride=stride, padding=padding,
                     groups=groups, use_bias=False, impl=impl, kernel_init=kernel_init,
                     dtype=dtype, rngs=rngs)
    self.bn = BatchNorm(out_features, momentum=bn_momentum, epsilon=bn_epsilon, dtype=dtype,
                        rngs=rngs)
    self.act = activation(act)

  def __call__(self, x, *, train: bool = False):
    return self.act(self.bn(self.conv(x), train=train))


def zero_last_scale(block: ConvBNAct) -> None:
  """Sets `block`'s BatchNorm scale to 0, so that a residual branch ending in it starts
  as nothing and its block as the identity (Goyal et al. 2017; torchvision's
  `zero_init_residual`)."""
  block.bn.scale[...] = jnp.zeros_like(block.bn.scale[...])


class SqueezeExcite(nnx.Module):
  """Channel attention: global average -> 1x1 conv (reduce) -> act -> 1x1 conv -> gate
  (EfficientNet: swish and sigmoid; MobileNetV3: relu and hardsigmoid)."""

  def __init__(self, features: int, squeeze: int, *, act: str = "swish",
               gate: str = "sigmoid", kernel_init=default_kernel_init, dtype=None,
               rngs: nnx.Rngs):
    kw = dict(kernel_init=kernel_init, dtype=dtype, rngs=rngs)
    self.reduce = Conv(features, squeeze, 1, **kw)
    self.expand = Conv(squeeze, features, 1, **kw)
    self.act, self.gate = activation(act), activation(gate)

  def __call__(self, x):
    s = ops.global_avg_pool(x, keepdims=True)
    return x * self.gate(self.expand(self.act(self.reduce(s))))


class StochasticDepth(nnx.Module):
  """Drops the whole residual branch per example with probability `rate` in training,
  scaling survivors by 1 / (1 - rate) (Huang et al. 2016, torchvision's "row" mode)."""

  def __init__(self, rate: float):
    self.rate = rate

  def __call__(self, x, *, train: bool = False, rngs: nnx.Rngs | None = None):
    if not train or self.rate == 0.0:
      return x
    if rngs is None:
      raise fail("rngs", "nnx.Rngs with a 'dropout' stream in training", rngs)
    keep = 1.0 - self.rate
    mask = jax.random.bernoulli(rngs.dropout(), keep, (x.shape[0],) + (1,) * (x.ndim - 1))
    return jnp.where(mask, x / keep, 0.0).astype(x.dtype)
