"""`ops.conv(impl="xla")`'s CPU path for a kernel wider than its output (one matmul over
the taps) equals `lax.conv_general_dilated` (float64, values and gradients, forward and
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


def ours(x, w, strides, padding, dilation):
  return ops.conv(x, w, stride=strides, padding=padding, dilation=dilation, impl="xla")


def takes_the_matmul(size, kernel, strides, padding, dilation) -> bool:
  """Whether `ops.conv` traces no XLA convolution for this shape (on CPU)."""
  x, w = jnp.zeros((1, *size, 2)), jnp.zeros((*kernel, 2, 3))
  jaxpr = jax.make_jaxpr(lambda x, w: ours(x, w, strides, padding, dilation))(x, w)
  return "conv_general_dilated" not in str(jaxpr)


def check_equal(x, w, *args):
  """Values, the gradient of a nonlinear scalar (reverse mode) and a JVP (forward mode)."""
  loss = lambda f: lambda x, w: jnp.sum(jnp.sin(f(x, w, *args)))
  np.testing.assert_allclose(ours(x, w, *args), reference(x, w, *args), **TIGHT)
  for a, e in zip(jax.jit(jax.grad(loss(ours), (0, 1)))(x, w),
                  jax.jit(jax.grad(loss(reference), (0, 1)))(x, w)):
    np.testing.assert_allclose(a, e, **TIGHT)
  tangents = (normal(7, x.shape), normal(8, w.shape))
  np.testing.assert_allclose(jax.jvp(lambda x, w: ours(x, w, *args), (x, w), tangents)[1],
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


def test_only_a_kernel_wider_than_the_output_takes_the_matmul():
  same = ((1, 1), (1, 1))
  assert not takes_the_matmul((3, 3), (3, 3), (1, 1), same, (1, 1))
  assert takes_the_matmul((2, 9), (3, 3), (1, 1), same, (1, 1))
  assert takes_the_matmul((7, 7), (3, 3), (4, 4), same, (1, 1))  # stride
