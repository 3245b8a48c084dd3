"""`ops.conv(impl="xla")`'s CPU path for a kernel wider than its output or 1x1 (one matmul
over the taps) equals `lax.conv_general_dilated` (float64, values and gradients, forward and
reverse mode), and only those convolutions take it."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from cnn_lab import ops

TIGHT = dict(rtol=1e-9, atol=1e-9)


def normal(seed, shape):
  """float64 standard-normal test input (under the module's `jax.enable_x64`)."""
  return jnp.asarray(np.random.default_rng(seed).standard_normal(shape))


@pytest.fixture(autouse=True)
def x64():
  with jax.enable_x64(True):
    yield


def layout(x):
  spatial = "DHW"[3 - (x.ndim - 2):]
  return (f"N{spatial}C", f"{spatial}IO", f"N{spatial}C")


def reference(x, w, strides, padding, dilation):
  return lax.conv_general_dilated(x, w, strides, padding, rhs_dilation=dilation,
                                  dimension_numbers=layout(x))


def ours(x, w, strides, padding, dilation, impl="xla"):
  return ops.conv(x, w, stride=strides, padding=padding, dilation=dilation, impl=impl)


def takes_the_matmul(size, kernel, strides, padding, dilation) -> bool:
  """Whether `ops.conv` traces no XLA convolution for this shape (on CPU)."""
  x, w = jnp.zeros((1, *size, 2)), jnp.zeros((*kernel, 2, 3))
  jaxpr = jax.make_jaxpr(lambda x, w: ours(x, w, strides, padding, dilation))(x, w)
  return "conv_general_dilated" not in str(jaxpr)


def check_equal(x, w, *args, impl="xla"):
  """Values, the gradient of a nonlinear scalar (reverse mode) and a JVP (forward mode)."""
  ours_ = lambda x, w, *args: ours(x, w, *args, impl=impl)
  loss = lambda f: lambda x, w: jnp.sum(jnp.sin(f(x, w, *args)))
  np.testing.assert_allclose(ours_(x, w, *args), reference(x, w, *args), **TIGHT)
  for a, e in zip(jax.jit(jax.grad(loss(ours_), (0, 1)))(x, w),
                  jax.jit(jax.grad(loss(reference), (0, 1)))(x, w)):
    np.testing.assert_allclose(a, e, **TIGHT)
  tangents = (normal(7, x.shape), normal(8, w.shape))
  np.testing.assert_allclose(jax.jvp(lambda x, w: ours_(x, w, *args), (x, w), tangents)[1],
                             jax.jvp(lambda x, w: reference(x, w, *args), (x, w), tangents)[1],
                             **TIGHT)


@pytest.mark.parametrize("size,kernel,strides,padding,dilation", [
    ((2, 2), (3, 3), (1, 1), ((1, 1), (1, 1)), (1, 1)),  # VGG's last stage at 32x32
    ((1, 1), (3, 3), (1, 1), ((1, 1), (1, 1)), (1, 1)),  # one tap sees the input
    ((4, 3), (5, 5), (2, 1), ((2, 2), (2, 2)), (1, 1)),
    ((2, 3), (2, 3), (1, 1), ((1, 0), (2, 2)), (2, 2)),
    ((5,), (5,), (1,), ((1, 1),), (1,)),  # 1D
    ((2, 2, 2), (3, 3, 3), (1, 1, 1), ((1, 1),) * 3, (1, 1, 1)),  # 3D
    ((1,), (2,), (1,), ((1, 1),), (2,))])  # both dilated taps on padding: zeros
def test_window_wider_than_the_output_is_one_matmul_equal_to_xla(size, kernel, strides,
                                                                  padding, dilation):
  assert takes_the_matmul(size, kernel, strides, padding, dilation)
  x = normal(2, (3, *size, 5))
  w = normal(3, (*kernel, 5, 4))
  check_equal(x, w, strides, padding, dilation)


@pytest.mark.parametrize("impl", ["xla", "scratch"])
@pytest.mark.parametrize("size,strides,padding", [
    ((4, 5), (1, 1), ((0, 0), (0, 0))),  # pointwise (MobileNets, bottlenecks)
    ((5, 4), (2, 2), ((0, 0), (0, 0))),  # a strided projection shortcut
    ((3,), (1,), ((1, 1),)),  # 1D, padded: the border is zeros
    ((2, 3, 2), (1, 2, 1), ((0, 0),) * 3)])  # 3D
def test_one_by_one_kernel_is_one_matmul_equal_to_xla(size, strides, padding, impl):
  ones = (1,) * len(size)
  assert takes_the_matmul(size, ones, strides, padding, ones)
  check_equal(normal(2, (3, *size, 5)), normal(3, (*ones, 5, 4)), strides, padding, ones,
              impl=impl)


def test_only_a_kernel_wider_than_the_output_or_1x1_takes_the_matmul():
  same = ((1, 1), (1, 1))
  assert not takes_the_matmul((3, 3), (3, 3), (1, 1), same, (1, 1))
  assert not takes_the_matmul((3, 3), (1, 3), (1, 1), same, (1, 1))  # 1x3: not 1x1
  assert takes_the_matmul((2, 9), (3, 3), (1, 1), same, (1, 1))
  assert takes_the_matmul((7, 7), (3, 3), (4, 4), same, (1, 1))  # stride


@pytest.mark.parametrize("size,kernel,stride", [(96, 3, 1), (192, 5, 2)])
def test_depthwise_kernel_gradient_summed_in_batch_blocks_equals_xla(size, kernel, stride):
  """impl="scratch" depthwise sums its kernel gradient over batch blocks (here 2 blocks of
  2 examples: `batch_blocked`); values, gradients and JVPs equal XLA's grouped one."""
  x, w = normal(2, (4, size, size, 8)), normal(3, (kernel, kernel, 1, 8))
  pad = ((kernel // 2,) * 2,) * 2

  def conv(impl):
    return lambda x, w: ops.conv(x, w, stride=stride, padding=pad, groups=8, impl=impl)

  loss = lambda f: lambda x, w: jnp.sum(jnp.sin(f(x, w)))
  assert "scan" in str(jax.make_jaxpr(jax.grad(loss(conv("scratch")), 1))(x, w))
  # a frozen kernel (the input's gradient alone) skips the blocked pass
  assert "scan" not in str(jax.make_jaxpr(jax.grad(loss(conv("scratch")), 0))(x, w))
  np.testing.assert_allclose(conv("scratch")(x, w), conv("xla")(x, w), **TIGHT)
  for a, e in zip(jax.jit(jax.grad(loss(conv("scratch")), (0, 1)))(x, w),
                  jax.jit(jax.grad(loss(conv("xla")), (0, 1)))(x, w)):
    np.testing.assert_allclose(a, e, **TIGHT)
  tangents = (normal(7, x.shape), normal(8, w.shape))
  np.testing.assert_allclose(jax.jvp(conv("scratch"), (x, w), tangents)[1],
                             jax.jvp(conv("xla"), (x, w), tangents)[1], **TIGHT)
