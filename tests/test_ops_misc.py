"""Pooling, LRN and edge filters against direct formulas; scratch == xla."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cnn_lab import ops
from tests.helpers import normal

TOL = dict(rtol=1e-5, atol=1e-5)


@settings(max_examples=12)
@given(st.integers(1, 3), st.integers(1, 3), st.integers(1, 3),
       st.sampled_from(["SAME", "VALID", 0, 1]), st.booleans(), st.integers(0, 500))
def test_pools_scratch_match_xla(ndim, f, s, padding, include_pad, seed):
  if isinstance(padding, int) and padding > f // 2:
    padding = 0
  x = normal(seed, (2, *(5,) * ndim, 3))
  pools = [(ops.max_pool, {}), (ops.avg_pool, dict(count_include_pad=include_pad))]

  @functools.partial(jax.jit, static_argnums=1)
  def values_and_grads(x, impl):
    out = []
    for pool, kw in pools:
      f_x = lambda x: pool(x, f, s, padding, impl=impl, **kw)
      out += [f_x(x), jax.grad(lambda x: jnp.sum(f_x(x) ** 2))(x)]
    return out

  for a, e in zip(values_and_grads(x, "scratch"), values_and_grads(x, "xla")):
    np.testing.assert_allclose(a, e, **TOL)


@pytest.mark.parametrize("ndim", [1, 2, 3])
def test_tiling_windows_equal_reduce_window(ndim):
  """stride == window, no padding: the reshape path equals lax.reduce_window, values and
  gradients (no ties); tied maxima share the gradient equally."""
  from jax import lax
  x = normal(ndim, (2, *(4,) * ndim, 3))
  dims, zeros = (1, *(2,) * ndim, 1), ((0, 0),) * (ndim + 2)
  refs = {ops.max_pool: lambda x: lax.reduce_window(x, -jnp.inf, lax.max, dims, dims, zeros),
          ops.avg_pool: lambda x: lax.reduce_window(x, 0.0, lax.add, dims, dims, zeros) / 2 ** ndim}
  for pool, ref in refs.items():
    loss = lambda f: jax.grad(lambda x: jnp.sum(jnp.sin(f(x))))
    np.testing.assert_allclose(pool(x, 2), ref(x), **TOL)
    np.testing.assert_allclose(loss(lambda x: pool(x, 2))(x), loss(ref)(x), **TOL)
  grad = jax.grad(lambda x: jnp.sum(ops.max_pool(x, 2)))(jnp.ones((1, 2, 2, 1)))
  np.testing.assert_allclose(grad, 0.25)


def test_pool_values_course_example():
  x = jnp.arange(16.0).reshape(1, 4, 4, 1)
  np.testing.assert_array_equal(ops.max_pool(x, 2)[0, :, :, 0], [[5, 7], [13, 15]])
  np.testing.assert_array_equal(ops.avg_pool(x, 2)[0, :, :, 0], [[2.5, 4.5], [10.5, 12.5]])
  # SAME padding excludes padded zeros from the average by default
  y = ops.avg_pool(jnp.ones((1, 3, 3, 1)), 2, 1, "SAME")
  np.testing.assert_allclose(y, 1.0)
  assert ops.global_avg_pool(x).shape == (1, 1)
  assert float(ops.global_max_pool(x)[0, 0]) == 15.0


def test_local_response_norm_matches_paper_formula():
  x = np.asarray(normal(0, (2, 3, 3, 7)))
  k, n, alpha, beta = 2.0, 5, 1e-4, 0.75
  ref = np.empty_like(x)
  for c in range(7):
    lo, hi = max(0, c - n // 2), min(6, c + n // 2)
    ref[..., c] = x[..., c] / (k + alpha * np.sum(x[..., lo:hi + 1] ** 2, -1)) ** beta
  big = 100 * x  # the un-divided sum matters with large activations
  ref_big = big[..., 3] / (k + alpha * np.sum(big[..., 1:6] ** 2, -1)) ** beta
  grads = []
  for impl in ("xla", "scratch"):
    np.testing.assert_allclose(ops.local_response_norm(x, impl=impl), ref, rtol=1e-6)
    np.testing.assert_allclose(ops.local_response_norm(big, impl=impl)[..., 3], ref_big,
                               rtol=1e-5)
    grads.append(jax.grad(lambda v: jnp.sum(jnp.sin(ops.local_response_norm(
        v, 1, 1.0, 0.1, 0.6, impl=impl))))(jnp.asarray(big / 50)))
  np.testing.assert_allclose(grads[0], grads[1], rtol=1e-5, atol=1e-7)
  with pytest.raises(ValueError, match="impl: expected one of"):
    ops.local_response_norm(x, impl="cuda")


def test_vertical_edge_detector_course_example():
  img = jnp.concatenate([jnp.full((6, 3), 10.0), jnp.zeros((6, 3))], axis=1)
  y = ops.detect_edges(img, "plain", "vertical")
  np.testing.assert_array_equal(y, np.tile([0, 30, 30, 0], (4, 1)))
  assert float(jnp.abs(ops.detect_edges(img, "plain", "horizontal")).max()) == 0
  for name in ops.FILTERS:
    k = ops.edge_filter(name)
    assert k.shape == (3, 3) and k.sum() == 0
    np.testing.assert_array_equal(ops.edge_filter(name, "horizontal"), k.T)
  assert ops.edge_filter("sobel")[1, 0] == 2 and ops.edge_filter("scharr")[1, 0] == 10
  mag = ops.detect_edges(jnp.ones((1, 6, 6, 3)), "sobel", "magnitude", impl="scratch")
  assert mag.shape == (1, 4, 4, 3) and float(mag.max()) == 0


def test_bad_filter_names():
  with pytest.raises(ValueError, match="name: expected one of"):
    ops.edge_filter("canny")
  with pytest.raises(ValueError, match="orientation: expected one of"):
    ops.detect_edges(jnp.ones((6, 6)), orientation="diagonal")
  with pytest.raises(ValueError, match="window: expected values >= 1"):
    ops.max_pool(jnp.ones((1, 4, 4, 1)), 0)


def _torch_out(n, k, p, s, d, ceil_mode):
  """PyTorch's pooling_output_shape."""
  out = (n + 2 * p - d * (k - 1) - 1 + (s - 1 if ceil_mode else 0)) // s + 1
  return out - 1 if ceil_mode and (out - 1) * s >= n + p else out


def torch_max_pool2d(x, k, s, p, d, ceil_mode):
  """PyTorch's CPU max_pool2d loops over `x: [H, W]` (float64)."""
  oh, ow = (_torch_out(n, k, p, s, d, ceil_mode) for n in x.shape)
  out = np.zeros((oh, ow))
  for i in range(oh):
    for j in range(ow):
      rows = [r for r in range(i * s - p, i * s - p + (k - 1) * d + 1, d) if 0 <= r < x.shape[0]]
      cols = [c for c in range(j * s - p, j * s - p + (k - 1) * d + 1, d) if 0 <= c < x.shape[1]]
      out[i, j] = x[np.ix_(rows, cols)].max()
  return out


def torch_avg_pool2d(x, k, s, p, ceil_mode, count_include_pad):
  """PyTorch's CPU avg_pool2d loops over `x: [H, W]` (float64)."""
  (h, w), (oh, ow) = x.shape, (_torch_out(n, k, p, s, 1, ceil_mode) for n in x.shape)
  out = np.zeros((oh, ow))
  for i in range(oh):
    for j in range(ow):
      h0, w0 = i * s - p, j * s - p
      h1, w1 = min(h0 + k, h + p), min(w0 + k, w + p)
      size = (h1 - h0) * (w1 - w0)
      h0, w0, h1, w1 = max(h0, 0), max(w0, 0), min(h1, h), min(w1, w)
      cells = x[h0:h1, w0:w1]
      out[i, j] = cells.sum() / (size if count_include_pad else cells.size)
  return out


@settings(max_examples=15)
@given(n=st.integers(3, 9), k=st.integers(1, 4), s=st.integers(1, 3), p=st.integers(0, 2),
       d=st.integers(1, 3), ceil_mode=st.booleans(), include_pad=st.booleans(),
       seed=st.integers(0, 99))
def test_pool_options_equal_pytorchs_definitions(n, k, s, p, d, ceil_mode, include_pad, seed):
  """max_pool's dilation and ceil_mode, avg_pool's ceil_mode and count_include_pad, both
  impls, against PyTorch's kernels written out; the two impls' gradients agree."""
  if p > k // 2 or (k - 1) * d + 1 > n + 2 * p:  # PyTorch refuses these
    return
  x = np.random.default_rng(seed).normal(size=(n, n + 1))
  xj = jnp.asarray(x[None, :, :, None], jnp.float32)
  cases = [(lambda x, impl: ops.max_pool(x, k, s, p, dilation=d, ceil_mode=ceil_mode,
                                         impl=impl), torch_max_pool2d(x, k, s, p, d, ceil_mode))]
  cases.append((lambda x, impl: ops.avg_pool(x, k, s, p, ceil_mode=ceil_mode,
                                             count_include_pad=include_pad, impl=impl),
                torch_avg_pool2d(x, k, s, p, ceil_mode, include_pad)))
  for pool, expected in cases:
    grads = []
    for impl in ("xla", "scratch"):  # jitted: eager, each op would compile alone
      y, grad = jax.jit(lambda x: (pool(x, impl), jax.grad(
          lambda x: jnp.sum(jnp.sin(pool(x, impl))))(x)))(xj)
      np.testing.assert_allclose(y[0, :, :, 0], expected, rtol=1e-5, atol=1e-6)
      grads.append(grad)
    np.testing.assert_allclose(grads[0], grads[1], rtol=1e-5, atol=1e-6)
