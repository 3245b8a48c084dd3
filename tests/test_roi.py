"""RoI max pooling and RoIAlign against loop references written from torchvision's CPU
kernels (values and gradients), pure / jit / vmap, and their documented edge cases."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from cnn_lab.ops.roi import roi_align, roi_max_pool
from tests.helpers import normal

# Jitted, as the models run them: op by op, one pooling compiles dozens of programs of
# its own. (test_jit_and_vmap_agree_with_the_pure_function: jitted == op by op.)
align = jax.jit(roi_align, static_argnums=2,
                static_argnames=("spatial_scale", "sampling_ratio", "aligned"))
max_pool = jax.jit(roi_max_pool, static_argnums=2, static_argnames="spatial_scale")


def _bilinear_taps(y, x, height, width):
  """torchvision's bilinear_interpolate: [(weight, row, col)] of one sample point."""
  if y < -1.0 or y > height or x < -1.0 or x > width:
    return []
  y, x = max(y, 0.0), max(x, 0.0)
  yl, xl = int(y), int(x)
  if yl >= height - 1:
    yl = yh = height - 1
    y = float(yl)
  else:
    yh = yl + 1
  if xl >= width - 1:
    xl = xh = width - 1
    x = float(xl)
  else:
    xh = xl + 1
  ly, lx = y - yl, x - xl
  return [((1 - ly) * (1 - lx), yl, xl), ((1 - ly) * lx, yl, xh),
          (ly * (1 - lx), yh, xl), (ly * lx, yh, xh)]


def reference_roi_align(features, boxes, size, scale, ratio, aligned=True):
  """Straight loops over RoIs, bins and sample points; jnp so that it differentiates."""
  height, width, _ = features.shape
  offset = 0.5 if aligned else 0.0
  rois = []
  for x1, y1, x2, y2 in np.asarray(boxes, np.float64):
    sx, sy = x1 * scale - offset, y1 * scale - offset
    w, h = x2 * scale - offset - sx, y2 * scale - offset - sy  # negative if inverted
    if not aligned:
      w, h = max(w, 1.0), max(h, 1.0)
    bins = []
    for a in range(size):
      row = []
      for b in range(size):
        total = jnp.zeros(features.shape[-1])
        for iy in range(ratio):
          for ix in range(ratio):
            y = sy + a * h / size + (iy + 0.5) * h / size / ratio
            x = sx + b * w / size + (ix + 0.5) * w / size / ratio
            for weight, r, c in _bilinear_taps(y, x, height, width):
              total = total + weight * features[r, c]
        row.append(total / ratio ** 2)
      bins.append(jnp.stack(row))
    rois.append(jnp.stack(bins))
  return jnp.stack(rois)


def _c_round(v: np.float32) -> int:
  """C's round(): halves away from zero."""
  return int(np.sign(v) * np.floor(abs(np.float64(v)) + 0.5))


def reference_roi_pool(features, boxes, size, scale):
  """torchvision's roi_pool kernel line by line, its arithmetic in float32 (the features'
  type; spatial_scale a C float): corners rounded half away from zero, bin size
  n / bins, bin edges floor(i * size) and ceil((i + 1) * size), 0 where empty."""
  rows, cols = (size, size) if isinstance(size, int) else size
  height, width, _ = features.shape
  xp = np if isinstance(features, np.ndarray) else jnp  # jnp to be differentiated
  f32, scale = np.float32, np.float32(scale)
  out = []
  for x1, y1, x2, y2 in np.asarray(boxes, np.float32):
    sx, sy, ex, ey = (_c_round(f32(v) * scale) for v in (x1, y1, x2, y2))
    nh, nw = max(ey - sy + 1, 1), max(ex - sx + 1, 1)
    bh, bw = f32(nh) / f32(rows), f32(nw) / f32(cols)
    grid = []
    for a in range(rows):
      line = []
      for b in range(cols):
        h0 = min(max(int(np.floor(f32(a) * bh)) + sy, 0), height)
        h1 = min(max(int(np.ceil(f32(a + 1) * bh)) + sy, 0), height)
        w0 = min(max(int(np.floor(f32(b) * bw)) + sx, 0), width)
        w1 = min(max(int(np.ceil(f32(b + 1) * bw)) + sx, 0), width)
        line.append(xp.zeros(features.shape[-1], features.dtype) if h1 <= h0 or w1 <= w0
                    else xp.max(features[h0:h1, w0:w1].reshape(-1, features.shape[-1]), 0))
      grid.append(xp.stack(line))
    out.append(xp.stack(grid))
  return xp.stack(out)


def _random_case(seed, count=5, height=9, width=11, channels=3):
  rng = np.random.default_rng(seed)
  features = jnp.asarray(rng.normal(size=(height, width, channels)), jnp.float32)
  corners = rng.uniform(-8, 50, size=(count, 2, 2))  # input pixels; stride 4 below
  boxes = np.concatenate([corners.min(1), corners.max(1)], -1)  # (x1, y1, x2, y2)
  return features, jnp.asarray(boxes, jnp.float32)


def _values_and_grads(fn, features, seed):
  """fn(features) and the gradient of sum(fn(features) * a random cotangent), jitted
  (eagerly, every small op of the references compiles alone)."""
  cot = normal(seed, jax.eval_shape(fn, features).shape)
  return jax.jit(lambda f: (fn(f), jax.grad(lambda f: jnp.sum(fn(f) * cot))(f)))(features)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("aligned", [True, False])
def test_roi_align_matches_reference_values_and_feature_gradients(seed, aligned):
  features, boxes = _random_case(seed)
  args = dict(spatial_scale=0.25, sampling_ratio=2, aligned=aligned)
  ours, g = _values_and_grads(lambda f: roi_align(f, boxes, 3, **args), features, seed)
  ref, g_ref = _values_and_grads(
      lambda f: reference_roi_align(f, boxes, 3, 0.25, 2, aligned), features, seed)
  np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(g, g_ref, rtol=1e-5, atol=1e-5)


def test_roi_align_box_gradients_match_finite_differences():
  features, _ = _random_case(7)
  boxes = jnp.asarray([[5.3, 6.1, 30.7, 21.9], [12.2, 3.4, 20.6, 33.3]], jnp.float32)
  f = lambda b: align(features, b, 2, spatial_scale=0.25, sampling_ratio=2)
  check_grads(f, (boxes,), order=1, modes=["rev"], eps=1e-2, atol=2e-2, rtol=2e-2)


@pytest.mark.parametrize("seed", range(3))
def test_roi_max_pool_matches_reference_values_and_gradients(seed):
  features, boxes = _random_case(seed)
  ours, g = _values_and_grads(lambda f: roi_max_pool(f, boxes, (2, 3), spatial_scale=0.25),
                              features, seed)
  ref, g_ref = _values_and_grads(lambda f: reference_roi_pool(f, boxes, (2, 3), 0.25),
                                 features, seed)
  np.testing.assert_array_equal(ours, ref)
  np.testing.assert_allclose(g, g_ref, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("op", ["align", "pool"])
def test_jit_and_vmap_agree_with_the_pure_function(op):
  pool = (lambda f, b: roi_align(f, b, 4, spatial_scale=0.25)) if op == "align" else \
      (lambda f, b: roi_max_pool(f, b, 4, spatial_scale=0.25))
  cases = [_random_case(s) for s in range(3)]
  features = jnp.stack([f for f, _ in cases])
  boxes = jnp.stack([b for _, b in cases])
  batched = jax.jit(jax.vmap(pool))(features, boxes)
  for i, (f, b) in enumerate(cases):
    np.testing.assert_allclose(batched[i], pool(f, b), rtol=1e-6, atol=1e-6)


def test_rois_outside_the_image_pool_zeros_and_partial_ones_pool_what_is_inside():
  features = jnp.arange(1.0, 17.0).reshape(4, 4, 1)  # all positive
  outside = jnp.asarray([[20.0, 20.0, 30.0, 30.0], [-30.0, -30.0, -20.0, -25.0]])
  assert not jnp.any(align(features, outside, 2))
  assert not jnp.any(max_pool(features, outside, 2))
  # The right half of this RoI lies beyond the last column: RoI pooling clips it away
  # (its right bins are empty: 0); RoIAlign samples within a cell of the border only.
  partial = jnp.asarray([[2.0, 0.0, 5.9, 3.9]])
  pooled = max_pool(features, partial, 2)[0, :, :, 0]
  np.testing.assert_array_equal(pooled, [[12.0, 0.0], [16.0, 0.0]])
  aligned = align(features, partial, 2)[0, :, :, 0]
  assert jnp.all(aligned[:, 1] > 0) and jnp.all(jnp.isfinite(aligned))


def test_degenerate_and_empty_rois():
  features, _ = _random_case(0)
  point = jnp.asarray([[10.0, 12.0, 10.0, 12.0]])
  inverted = jnp.asarray([[10.0, 12.0, 2.0, 3.0]])  # x2 < x1, y2 < y1
  a = align(features, point, 3, spatial_scale=0.25)
  # zero size: every sample is the one point, so every bin is the same vector
  np.testing.assert_allclose(a, jnp.broadcast_to(a[:, :1, :1], a.shape), rtol=1e-6)
  for aligned in (True, False):  # aligned keeps the negative size, unaligned takes 1 x 1
    np.testing.assert_allclose(
        align(features, inverted, 3, spatial_scale=0.25, aligned=aligned),
        reference_roi_align(features, inverted, 3, 0.25, 2, aligned), rtol=1e-5, atol=1e-6)
  assert not np.allclose(align(features, inverted, 3, spatial_scale=0.25), a)
  np.testing.assert_array_equal(
      max_pool(features, inverted, 2, spatial_scale=0.25),
      reference_roi_pool(features, inverted, 2, 0.25))
  for pool in (align, max_pool):
    out = pool(features, jnp.zeros((0, 4)), (2, 3))
    assert out.shape == (0, 2, 3, features.shape[-1])


def test_bad_arguments_name_the_argument():
  features, boxes = _random_case(0)
  with pytest.raises(ValueError, match=r"^features: expected one image's features"):
    roi_align(features[None], boxes, 2)
  with pytest.raises(ValueError, match=r"^boxes: expected RoIs \[R, 4\]"):
    roi_max_pool(features, boxes[:, :3], 2)
  with pytest.raises(ValueError, match=r"^spatial_scale: expected a positive number"):
    roi_align(features, boxes, 2, spatial_scale=0.0)
  with pytest.raises(ValueError, match=r"^sampling_ratio: expected an int >= 1"):
    roi_align(features, boxes, 2, sampling_ratio=-1)
  with pytest.raises(ValueError, match=r"^output_size: expected values >= 1"):
    roi_max_pool(features, boxes, 0)


def test_roi_max_pool_bins_are_torchvisions_for_every_size():
  """Every RoI height 1..80 cells into 1, 7, 11, 13 and 14 bins (for these heights, the
  only bin counts below 15 where torchvision's float32 edges differ from exact integer
  ones: 57 rows in 7 bins end at row 58, not 57): torchvision's bins, bin for bin."""
  rng = np.random.default_rng(0)
  features = jnp.asarray(rng.normal(size=(96, 3, 2)), jnp.float32)
  heights = np.arange(1, 81, dtype=np.float32)
  boxes = np.stack([np.zeros(80), np.full(80, 2.0), np.full(80, 2.0), 2 + heights - 1], -1)
  for bins in (1, 7, 11, 13, 14):  # 7, 11, 13, 14 hold every float-vs-integer difference
    got = max_pool(features, jnp.asarray(boxes, jnp.float32), (bins, 1))
    np.testing.assert_array_equal(got, reference_roi_pool(np.asarray(features), boxes,
                                                          (bins, 1), 1.0))
  # the documented case: rows 2..58 (57 cells) in 7 bins; the last bin reaches row 59
  one = jnp.zeros((96, 1, 1)).at[59, 0, 0].set(5.0)
  pooled = max_pool(one, jnp.asarray([[0.0, 2.0, 0.0, 58.0]]), (7, 1))
  assert float(pooled[0, 6, 0, 0]) == 5.0
