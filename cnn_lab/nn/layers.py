"""Flax NNX layers built on `cnn_lab.ops`; each conv-like layer carries the `impl` switch.

Parameters are stored in float32 (`param_dtype`); `dtype` sets the compute
dtype (bfloat16 for mixed precision), inputs and parameters are cast to it.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from cnn_lab import ops
from cnn_lab.ops._checks import fail, tuple_arg

default_kernel_init = nnx.initializers.lecun_normal()
zeros = nnx.initializers.zeros_init()


def _check_channels(x, expected: int) -> None:
  if x.ndim < 3 or x.shape[-1] != expected:
    raise fail("x.shape[-1] (channels)", f"{expected}, with x as [N, *spatial, C]",
               x.shape[-1] if x.ndim else x.shape)


def _cast(dtype, *arrays):
  return arrays if dtype is None else tuple(None if a is None else a.astype(dtype)
                                            for a in arrays)


class Conv(nnx.Module):
  """Convolution layer: `[N, *spatial, in_features]` -> `[N, *out, out_features]`.

  The spatial rank is `len(kernel_size)` (an int means 2D).
  Parameters: kernel `[*kernel_size, in_features / groups, out_features]`, bias `[out]`.
  """

  def __init__(self, in_features: int, out_features: int,
               kernel_size: int | Sequence[int], *, stride=1, padding="SAME", dilation=1,
               groups: int = 1, use_bias: bool = True, impl: str = "xla",
               kernel_init=default_kernel_init, bias_init=zeros, dtype=None,
               param_dtype=jnp.float32, rngs: nnx.Rngs):
    if isinstance(kernel_size, int):
      kernel_size = (kernel_size, kernel_size)
    kernel_size = tuple_arg(tuple(kernel_size), len(kernel_size), "kernel_size")
    if in_features % groups or out_features % groups:
      raise fail("groups", f"a divisor of in_features={in_features} and "
                 f"out_features={out_features}", groups)
    shape = (*kernel_size, in_features // groups, out_features)
    self.kernel = nnx.Param(kernel_init(rngs.params(), shape, param_dtype))
    self.bias = nnx.Param(bias_init(rngs.params(), (out_features,), param_dtype)) \
        if use_bias else None
    self.in_features, self.out_features = in_features, out_features
    self.stride, self.padding, self.dilation, self.groups = stride, padding, dilation, groups
    self.impl, self.dtype = impl, dtype

  def __call__(self, x):
    _check_channels(x, self.in_features)
    b = None if self.bias is None else self.bias[...]
    x, w, b = _cast(self.dtype, x, self.kernel[...], b)
    return ops.conv(x, w, b, stride=self.stride, padding=self.padding,
                    dilation=self.dilation, groups=self.groups, impl=self.impl)


class DepthwiseConv(nnx.Module):
  """Depthwise convolution, kernel `[*K, features, multiplier]`; out `features * multiplier`."""

  def __init__(self, features: int, kernel_size: int | Sequence[int], *, multiplier: int = 1,
               stride=1, padding="SAME", dilation=1, use_bias: bool = True,
               impl: str = "xla", kernel_init=default_kernel_init, bias_init=zeros,
               dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
    if isinstance(kernel_size, int):
      kernel_size = (kernel_size, kernel_size)
    shape = (*kernel_size, features, multiplier)
    self.kernel = nnx.Param(kernel_init(rngs.params(), shape, param_dtype))
    self.bias = nnx.Param(bias_init(rngs.params(), (features * multiplier,), param_dtype)) \
        if use_bias else None
    self.in_features = features
    self.stride, self.padding, self.dilation = stride, padding, dilation
    self.impl, self.dtype = impl, dtype

  def __call__(self, x):
    _check_channels(x, self.in_features)
    b = None if self.bias is None else self.bias[...]
    x, w, b = _cast(self.dtype, x, self.kernel[...], b)
    return ops.depthwise_conv(x, w, b, stride=self.stride, padding=self.padding,
                              dilation=self.dilation, impl=self.impl)


class ConvTranspose(nnx.Module):
  """Transpose convolution, kernel `[*K, in_features, out_features]` (scatter layout).

  padding "SAME" gives n*s, "VALID" n*s + max(f - s, 0); ints are PyTorch's.
  """

  def __init__(self, in_features: int, out_features: int,
               kernel_size: int | Sequence[int], *, stride=1, padding="SAME",
               output_padding=0, use_bias: bool = True, impl: str = "xla",
               kernel_init=default_kernel_init, bias_init=zeros, dtype=None,
               param_dtype=jnp.float32, rngs: nnx.Rngs):
    if isinstance(kernel_size, int):
      kernel_size = (kernel_size, kernel_size)
    shape = (*kernel_size, in_features, out_features)
    self.kernel = nnx.Param(kernel_init(rngs.params(), shape, param_dtype))
    self.bias = nnx.Param(bias_init(rngs.params(), (out_features,), param_dtype)) \
        if use_bias else None
    self.in_features = in_features
    self.stride, self.padding, self.output_padding = stride, padding, output_padding
    self.impl, self.dtype = impl, dtype

  def __call__(self, x):
    _check_channels(x, self.in_features)
    b = None if self.bias is None else self.bias[...]
    x, w, b = _cast(self.dtype, x, self.kernel[...], b)
    return ops.conv_transpose(x, w, b, stride=self.stride, padding=self.padding,
                              output_padding=self.output_padding, impl=self.impl)


class Dense(nnx.Module):
  """Fully connected layer `[..., in_features]` -> `[..., out_features]`."""

  def __init__(self, in_features: int, out_features: int, *, use_bias: bool = True,
               kernel_init=default_kernel_init, bias_init=zeros, dtype=None,
               param_dtype=jnp.float32, rngs: nnx.Rngs):
    self.kernel = nnx.Param(kernel_init(rngs.params(), (in_features, out_features),
                                        param_dtype))
    self.bias = nnx.Param(bias_init(rngs.params(), (out_features,), param_dtype)) \
        if use_bias else None
    self.in_features, self.out_features, self.dtype = in_features, out_features, dtype

  def __call__(self, x):
    if x.shape[-1] != self.in_features:
      raise fail("x.shape[-1]", f"in_features = {self.in_features}", x.shape[-1])
    b = None if self.bias is None else self.bias[...]
    x, w, b = _cast(self.dtype, x, self.kernel[...], b)
    y = x @ w
    return y if b is None else y + b


class MaxPool(nnx.Module):
  """Max pooling; `stride` defaults to `window`."""

  def __init__(self, window, stride=None, padding="VALID", *, impl: str = "xla"):
    self.window, self.stride, self.padding, self.impl = window, stride, padding, impl

  def __call__(self, x):
    return ops.max_pool(x, self.window, self.stride, self.padding, impl=self.impl)


class AvgPool(nnx.Module):
  """Average pooling; `stride` defaults to `window`."""

  def __init__(self, window, stride=None, padding="VALID", *, count_include_pad=False,
               impl: str = "xla"):
    self.window, self.stride, self.padding, self.impl = window, stride, padding, impl
    self.count_include_pad = count_include_pad

  def __call__(self, x):
    return ops.avg_pool(x, self.window, self.stride, self.padding,
                        count_include_pad=self.count_include_pad, impl=self.impl)


class LRN(nnx.Module):
  """Local response normalisation over channels (AlexNet: r=2, k=2, alpha=1e-4, beta=0.75)."""

  def __init__(self, depth_radius: int = 2, bias: float = 2.0, alpha: float = 1e-4,
               beta: float = 0.75):
    self.depth_radius, self.bias, self.alpha, self.beta = depth_radius, bias, alpha, beta

  def __call__(self, x):
    return ops.local_response_norm(x, self.depth_radius, self.bias, self.alpha, self.beta)


def flatten(x):
  """`[N, ...]` -> `[N, prod(...)]`."""
  return x.reshape(x.shape[0], -1)


ACTIVATIONS = {"relu": jax.nn.relu, "tanh": jnp.tanh, "sigmoid": jax.nn.sigmoid,
               "relu6": jax.nn.relu6, "swish": jax.nn.swish, "gelu": jax.nn.gelu,
               "identity": lambda x: x}


def activation(name: str):
  """An activation function by name."""
  if name not in ACTIVATIONS:
    raise fail("activation", f"one of {sorted(ACTIVATIONS)}", name)
  return ACTIVATIONS[name]
