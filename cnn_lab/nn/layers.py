"""Flax NNX layers built on `cnn_lab.ops`; each conv-like layer carries the `impl` switch.

Parameters are stored in float32 (`param_dtype`); `dtype` sets the compute
dtype (bfloat16 for mixed precision), inputs and parameters are cast to it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from cnn_lab import ops
from cnn_lab.errors import fail
from cnn_lab.nn import init
from cnn_lab.nn.record import record
from cnn_lab.ops._checks import tuple_arg

default_kernel_init = init.lecun_normal()  # flax's default, bit for bit (`cnn_lab.nn.init`)
zeros = init.zeros


def _check_channels(x, expected: int) -> None:
  if x.ndim < 3 or x.shape[-1] != expected:
    raise fail("x.shape[-1] (channels)", f"{expected}, with x as [N, *spatial, C]",
               x.shape[-1] if x.ndim else x.shape)


class _KernelLayer(nnx.Module):
  """A kernel, an optional bias, the input-channel check and the compute-dtype cast."""

  def _init_params(self, in_features: int, kernel_shape, out_features: int, use_bias: bool,
                   kernel_init, bias_init, dtype, param_dtype, rngs: nnx.Rngs) -> None:
    self.kernel = nnx.Param(kernel_init(rngs.params(), tuple(kernel_shape), param_dtype))
    self.bias = nnx.Param(bias_init(rngs.params(), (out_features,), param_dtype)) \
        if use_bias else None
    self.in_features, self.out_features, self.dtype = in_features, out_features, dtype

  def _operands(self, x, check_rank: bool = True):
    """-> (x, kernel, bias or None), checked and cast to the compute dtype."""
    if check_rank:
      _check_channels(x, self.in_features)
    elif x.shape[-1] != self.in_features:
      raise fail("x.shape[-1]", f"in_features = {self.in_features}", x.shape[-1])
    arrays = (x, self.kernel[...], None if self.bias is None else self.bias[...])
    if self.dtype is None:
      return arrays
    return tuple(None if a is None else a.astype(self.dtype) for a in arrays)


class Conv(_KernelLayer):
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
    self._init_params(in_features, (*kernel_size, in_features // groups, out_features),
                      out_features, use_bias, kernel_init, bias_init, dtype, param_dtype, rngs)
    self.stride, self.padding, self.dilation, self.groups = stride, padding, dilation, groups
    self.impl = impl

  def __call__(self, x):
    x, w, b = self._operands(x)
    y = ops.conv(x, w, b, stride=self.stride, padding=self.padding,
                 dilation=self.dilation, groups=self.groups, impl=self.impl)
    record(self, "conv", y, math.prod(y.shape) * math.prod(w.shape[:-1]))
    return y


class DepthwiseConv(_KernelLayer):
  """Depthwise convolution, kernel `[*K, features, multiplier]`; out `features * multiplier`."""

  def __init__(self, features: int, kernel_size: int | Sequence[int], *, multiplier: int = 1,
               stride=1, padding="SAME", dilation=1, use_bias: bool = True,
               impl: str = "xla", kernel_init=default_kernel_init, bias_init=zeros,
               dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
    if isinstance(kernel_size, int):
      kernel_size = (kernel_size, kernel_size)
    self._init_params(features, (*kernel_size, features, multiplier), features * multiplier,
                      use_bias, kernel_init, bias_init, dtype, param_dtype, rngs)
    self.stride, self.padding, self.dilation = stride, padding, dilation
    self.impl = impl

  def __call__(self, x):
    x, w, b = self._operands(x)
    y = ops.depthwise_conv(x, w, b, stride=self.stride, padding=self.padding,
                           dilation=self.dilation, impl=self.impl)
    record(self, "depthwise_conv", y, math.prod(y.shape) * math.prod(w.shape[:-2]))
    return y


class ConvTranspose(_KernelLayer):
  """Transpose convolution, kernel `[*K, in_features, out_features]` (scatter layout).

  padding "SAME" gives n*s, "VALID" n*s + max(f - s, 0); ints are PyTorch's, as are
  `dilation` and `groups` (kernel `[*K, in_features, out_features / groups]`).
  """

  def __init__(self, in_features: int, out_features: int,
               kernel_size: int | Sequence[int], *, stride=1, padding="SAME",
               output_padding=0, dilation=1, groups: int = 1, use_bias: bool = True,
               impl: str = "xla", kernel_init=default_kernel_init, bias_init=zeros,
               dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
    if isinstance(kernel_size, int):
      kernel_size = (kernel_size, kernel_size)
    if in_features % groups or out_features % groups:
      raise fail("groups", f"a divisor of in_features {in_features} and out_features "
                 f"{out_features}", groups)
    self._init_params(in_features, (*kernel_size, in_features, out_features // groups),
                      out_features, use_bias, kernel_init, bias_init, dtype, param_dtype,
                      rngs)
    self.stride, self.padding, self.output_padding = stride, padding, output_padding
    self.dilation, self.groups, self.impl = dilation, groups, impl

  def __call__(self, x):
    x, w, b = self._operands(x)
    y = ops.conv_transpose(x, w, b, stride=self.stride, padding=self.padding,
                           output_padding=self.output_padding, dilation=self.dilation,
                           groups=self.groups, impl=self.impl)
    record(self, "conv_transpose", y, math.prod(x.shape) * math.prod(w.shape[:-2]) *
           w.shape[-1])
    return y


class Dense(_KernelLayer):
  """Fully connected layer `[..., in_features]` -> `[..., out_features]`."""

  def __init__(self, in_features: int, out_features: int, *, use_bias: bool = True,
               kernel_init=default_kernel_init, bias_init=zeros, dtype=None,
               param_dtype=jnp.float32, rngs: nnx.Rngs):
    self._init_params(in_features, (in_features, out_features), out_features, use_bias,
                      kernel_init, bias_init, dtype, param_dtype, rngs)

  def __call__(self, x):
    x, w, b = self._operands(x, check_rank=False)
    y = x @ w
    record(self, "dense", y, math.prod(x.shape) * w.shape[-1])
    return y if b is None else y + b


class MaxPool(nnx.Module):
  """Max pooling; `stride` defaults to `window`; `dilation` and `ceil_mode` as PyTorch's."""

  def __init__(self, window, stride=None, padding="VALID", *, dilation=1,
               ceil_mode: bool = False, impl: str = "xla"):
    self.window, self.stride, self.padding, self.impl = window, stride, padding, impl
    self.dilation, self.ceil_mode = dilation, ceil_mode

  def __call__(self, x):
    y = ops.max_pool(x, self.window, self.stride, self.padding, dilation=self.dilation,
                     ceil_mode=self.ceil_mode, impl=self.impl)
    record(self, "max_pool", y)
    return y


class AvgPool(nnx.Module):
  """Average pooling; `stride` defaults to `window`; `count_include_pad` and `ceil_mode`
  as PyTorch's (which counts padding by default; we do not, as TensorFlow)."""

  def __init__(self, window, stride=None, padding="VALID", *, count_include_pad=False,
               ceil_mode: bool = False, impl: str = "xla"):
    self.window, self.stride, self.padding, self.impl = window, stride, padding, impl
    self.count_include_pad, self.ceil_mode = count_include_pad, ceil_mode

  def __call__(self, x):
    y = ops.avg_pool(x, self.window, self.stride, self.padding,
                     count_include_pad=self.count_include_pad, ceil_mode=self.ceil_mode,
                     impl=self.impl)
    record(self, "avg_pool", y)
    return y


class LRN(nnx.Module):
  """Local response normalisation over channels (AlexNet: r=2, k=2, alpha=1e-4, beta=0.75)."""

  def __init__(self, depth_radius: int = 2, bias: float = 2.0, alpha: float = 1e-4,
               beta: float = 0.75, *, impl: str = "xla"):
    self.depth_radius, self.bias, self.alpha, self.beta = depth_radius, bias, alpha, beta
    self.impl = impl

  def __call__(self, x):
    y = ops.local_response_norm(x, self.depth_radius, self.bias, self.alpha, self.beta,
                                impl=self.impl)
    record(self, "lrn", y)
    return y


class StoresTracedValues:
  """Mixed into an `nnx.Variable` type: its update inside a trace is a plain store.

  flax stores `variable[...] = new` by comparing the two arrays' shardings, and asking a
  tracer for its sharding builds an error message that walks the whole trace so far
  (jax `_origin_msg`): 2.8 s of tracing EfficientNet-B0's training step (its BatchNorm
  statistics, 98 stores), most of building EfficientNet-B7 abstractly (its RNG counts).
  The comparison cannot succeed or fail differently for two tracers (neither has one),
  so the store is what flax would do: the new value replaces the old."""

  def set_value(self, value, **kwargs):
    old = self.get_raw_value()
    if (kwargs.get("index") is Ellipsis and isinstance(value, jax.core.Tracer)
        and isinstance(old, jax.core.Tracer) and value.aval == old.aval):
      self.set_raw_value(value)
    else:
      super().set_value(value, **kwargs)


class RunningStat(StoresTracedValues, nnx.BatchStat):
  """A BatchNorm running statistic (`StoresTracedValues`)."""


class BatchNorm(nnx.BatchNorm):
  """flax's BatchNorm (statistics in `nnx.BatchStat`s: `RunningStat`), called with
  `train`, and recorded.

  PyTorch's momentum m is flax's 1 - m: the default 0.9 is PyTorch's 0.1.
  """

  def __init__(self, num_features: int, *, momentum: float = 0.9, epsilon: float = 1e-5,
               dtype=None, rngs: nnx.Rngs, **kwargs):
    kwargs = {"scale_init": init.ones, "bias_init": init.zeros, **kwargs}
    super().__init__(num_features, momentum=momentum, epsilon=epsilon, dtype=dtype,
                     rngs=rngs, **kwargs)
    self.mean = RunningStat(self.mean.get_raw_value())
    self.var = RunningStat(self.var.get_raw_value())

  def __call__(self, x, *, train: bool = False):
    y = super().__call__(x, use_running_average=not train)
    record(self, "batch_norm", y)
    return y


class AdaptiveAvgPool(nnx.Module):
  """PyTorch's AdaptiveAvgPool to a fixed `output_size`."""

  def __init__(self, output_size):
    self.output_size = output_size

  def __call__(self, x):
    y = ops.adaptive_avg_pool(x, self.output_size)
    record(self, "adaptive_avg_pool", y)
    return y


def flatten(x):
  """`[N, ...]` -> `[N, prod(...)]`."""
  return x.reshape(x.shape[0], -1)


ACTIVATIONS = {"relu": jax.nn.relu, "tanh": jnp.tanh, "sigmoid": jax.nn.sigmoid,
               "relu6": jax.nn.relu6, "leaky_relu": lambda x: jax.nn.leaky_relu(x, 0.1),
               "swish": jax.nn.swish, "gelu": jax.nn.gelu,
               "hardswish": jax.nn.hard_swish,  # x * relu6(x + 3) / 6 (MobileNetV3)
               "hardsigmoid": jax.nn.hard_sigmoid,  # relu6(x + 3) / 6
               "identity": lambda x: x}


def activation(name: str):
  """An activation function by name."""
  if name not in ACTIVATIONS:
    raise fail("activation", f"one of {sorted(ACTIVATIONS)}", name)
  return ACTIVATIONS[name]
