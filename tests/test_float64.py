"""The reference comparisons again in float64, to 1e-9 in values and gradients.

The other op tests compare float32 results with float32 tolerances; here JAX runs in
64-bit (`jax.enable_x64` for the test only) so that any difference larger than
rounding is a difference of definition. References are PyTorch's and torchvision's
kernels written out as loops (shared with the float32 tests); the reference gradient
of an op that is linear in its input, or piecewise linear as max pooling is away from
ties, is probed exactly: d<cot, f(x)>/dx_k = <cot, f(x + h e_k) - f(x)> / h.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnn_lab import ops
from cnn_lab.ops import boxes as box_ops
from cnn_lab.ops.roi import roi_align, roi_max_pool
from tests.test_ops_boxes import reference_iou
from tests.test_ops_conv import naive_conv2d, torch_conv_transpose2d
from tests.test_ops_misc import torch_avg_pool2d, torch_max_pool2d
from tests.test_roi import reference_roi_align, reference_roi_pool

TIGHT = dict(rtol=1e-9, atol=1e-9)


@pytest.fixture(autouse=True)
def x64():
  with jax.enable_x64(True):
    yield


def probed_gradient(reference, x, cot, h=1.0):
  """The gradient of <cot, reference(x)> w.r.t. `x` by one difference per element: exact
  (to rounding) where `reference` is linear in `x` along each axis with step `h`."""
  base, grad = np.sum(cot * reference(x)), np.zeros_like(x)
  for index in np.ndindex(x.shape):
    step = x.copy()
    step[index] += h
    grad[index] = (np.sum(cot * reference(step)) - base) / h
  return grad


def ours_and_gradient(op, x, cot):
  y, vjp = jax.vjp(op, jnp.asarray(x))
  return np.asarray(y), np.asarray(vjp(jnp.asarray(cot))[0])


def _check(op, reference, x, seed, h=1.0):
  """Both impls' values and input gradients against `reference` at 1e-9."""
  expected = reference(x)
  cot = np.random.default_rng(seed + 100).normal(size=expected.shape)
  expected_grad = probed_gradient(reference, x, cot, h)
  for impl in ops.IMPLS:
    y, grad = ours_and_gradient(lambda v: op(v, impl), x, cot)
    assert y.dtype == grad.dtype == np.float64, impl
    np.testing.assert_allclose(y, expected, **TIGHT, err_msg=impl)
    np.testing.assert_allclose(grad, expected_grad, **TIGHT, err_msg=impl)


@pytest.mark.parametrize("stride, pad", [(1, 0), (2, 1), (3, 2)])
def test_conv_float64(stride, pad):
  rng = np.random.default_rng(stride)
  x, w = rng.normal(size=(1, 7, 8, 3)), rng.normal(size=(3, 3, 3, 2))
  _check(lambda v, impl: ops.conv(v, w, stride=stride, padding=pad, impl=impl),
         lambda v: naive_conv2d(v, w, stride, pad), x, stride)
  # the kernel's gradient too: the op is linear in it
  cot = rng.normal(size=naive_conv2d(x, w, stride, pad).shape)
  expected = probed_gradient(lambda k: naive_conv2d(x, k, stride, pad), w, cot)
  for impl in ops.IMPLS:
    _, grad = ours_and_gradient(
        lambda k: ops.conv(jnp.asarray(x), k, stride=stride, padding=pad, impl=impl), w, cot)
    np.testing.assert_allclose(grad, expected, **TIGHT, err_msg=impl)


@pytest.mark.parametrize("f, s, p, d, groups", [(3, 2, 1, 1, 2), (2, 3, 0, 2, 4),
                                                (3, 1, 2, 3, 1)])
def test_conv_transpose_float64(f, s, p, d, groups):
  rng = np.random.default_rng(f + s)
  x, w = rng.normal(size=(3, 4, 4)), rng.normal(size=(f, f, 4, 2))
  op = min(s - 1, 1) if s > 1 and d == 1 else 0
  kw = dict(stride=s, padding=p, output_padding=op, dilation=d, groups=groups)
  _check(lambda v, impl: ops.conv_transpose(v[None], w, impl=impl, **kw)[0],
         lambda v: torch_conv_transpose2d(v, w, s, p, op, d, groups), x, f)


POOLS = [(5, 3, 2, 1, 1, True), (7, 2, 2, 0, 2, False), (8, 3, 3, 1, 2, True),
         (6, 4, 1, 2, 1, True), (9, 3, 2, 1, 3, False),
         (5, 2, 2, 1, 1, True)]  # ceil_mode's 4th window would start in the padding: dropped


@pytest.mark.parametrize("n, k, s, p, d, ceil_mode", POOLS)
def test_max_pool_float64(n, k, s, p, d, ceil_mode):
  x = np.random.default_rng(n).permutation(n * (n + 1)).reshape(n, n + 1) / 7.0  # no ties
  _check(lambda v, impl: ops.max_pool(v[None, :, :, None], k, s, p, dilation=d,
                                      ceil_mode=ceil_mode, impl=impl)[0, :, :, 0],
         lambda v: torch_max_pool2d(v, k, s, p, d, ceil_mode), x, n, h=1e-3)


@pytest.mark.parametrize("n, k, s, p, _, ceil_mode", POOLS)
@pytest.mark.parametrize("include_pad", [True, False])
def test_avg_pool_float64(n, k, s, p, _, ceil_mode, include_pad):
  x = np.random.default_rng(n).normal(size=(n, n + 1))
  _check(lambda v, impl: ops.avg_pool(v[None, :, :, None], k, s, p, ceil_mode=ceil_mode,
                                      count_include_pad=include_pad, impl=impl)[0, :, :, 0],
         lambda v: torch_avg_pool2d(v, k, s, p, ceil_mode, include_pad), x, n)


def test_local_response_norm_float64():
  """PyTorch's LocalResponseNorm(size, alpha, beta, k) is ours with depth_radius
  size // 2 and alpha / size (PyTorch divides the sum by the window size)."""
  x = np.random.default_rng(0).normal(size=(2, 3, 3, 7)) * 10
  radius, bias, alpha, beta = 2, 2.0, 1e-2, 0.75
  padded = np.pad(x ** 2, ((0, 0),) * 3 + ((radius, radius),))
  sums = sum(padded[..., i:i + 7] for i in range(2 * radius + 1))
  expected = x / (bias + alpha * sums) ** beta
  grads = []
  for impl in ops.IMPLS:
    lrn = lambda v: ops.local_response_norm(v, radius, bias, alpha, beta, impl=impl)
    np.testing.assert_allclose(lrn(jnp.asarray(x)), expected, **TIGHT)
    grads.append(jax.grad(lambda v: jnp.sum(jnp.sin(lrn(v))))(jnp.asarray(x)))
  np.testing.assert_allclose(grads[0], grads[1], **TIGHT)


def _roi_case(seed):
  rng = np.random.default_rng(seed)
  features = rng.normal(size=(9, 11, 2))
  corners = rng.uniform(-8, 50, size=(4, 2, 2))
  return features, np.concatenate([corners.min(1), corners.max(1)], -1)


@pytest.mark.parametrize("aligned", [True, False])
def test_roi_align_float64(aligned):
  features, boxes = _roi_case(0)
  boxes[0] = boxes[0, [2, 3, 0, 1]]  # one inverted box
  ours = lambda f: roi_align(f, jnp.asarray(boxes), 3, spatial_scale=0.25, sampling_ratio=2,
                             aligned=aligned)
  reference = lambda f: np.asarray(reference_roi_align(f, boxes, 3, 0.25, 2, aligned))
  cot = np.random.default_rng(1).normal(size=reference(features).shape)
  y, grad = ours_and_gradient(ours, features, cot)
  assert y.dtype == np.float64
  np.testing.assert_allclose(y, reference(features), **TIGHT)
  np.testing.assert_allclose(grad, probed_gradient(reference, features, cot), **TIGHT)


def test_roi_max_pool_float64_keeps_boxes_in_float64():
  """torchvision rounds float64 boxes in float64 (the old code cast them to float32)."""
  features, boxes = _roi_case(2)
  ours = lambda f: roi_max_pool(f, jnp.asarray(boxes), (2, 3), spatial_scale=0.25)
  reference = lambda f: np.asarray(reference_roi_pool(f, boxes, (2, 3), 0.25))
  cot = np.random.default_rng(3).normal(size=reference(features).shape)
  y, grad = ours_and_gradient(ours, features, cot)
  assert y.dtype == np.float64
  np.testing.assert_array_equal(y, reference(features))
  np.testing.assert_allclose(grad, probed_gradient(reference, features, cot, 1e-3), **TIGHT)


def test_iou_float64():
  rng = np.random.default_rng(0)
  a, b = (np.sort(rng.uniform(0, 10, (n, 2, 2)), 1).reshape(n, 4) for n in (6, 5))
  ours = box_ops.iou(jnp.asarray(a), jnp.asarray(b))
  assert ours.dtype == np.float64
  np.testing.assert_allclose(ours, reference_iou(a, b), **TIGHT)
