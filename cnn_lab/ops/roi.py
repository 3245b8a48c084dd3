"""Pooling a fixed-size feature per region of interest: RoI max pooling and RoIAlign.

Both take one image's features `[H, W, C]` and its RoIs `[R, 4]` as corner boxes
`(x1, y1, x2, y2)` in input coordinates, mapped onto the feature map by
`spatial_scale` (1/stride for pixel boxes, or the feature size for normalised boxes),
and return `[R, out_h, out_w, C]`. They are pure and jit-able; `jax.vmap` them over a
batch of images (RoIs `[N, R, 4]`). Both follow torchvision's definitions
(`torchvision.ops.roi_pool`, `roi_align`), checked against loop references in the tests.

* `roi_max_pool` (Fast R-CNN, Girshick 2015): the RoI is rounded to feature cells and cut
  into `out_h x out_w` bins of whole cells; each bin takes the maximum of its cells.
* `roi_align` (Mask R-CNN, He et al. 2017): no rounding; each bin averages
  `sampling_ratio^2` bilinearly interpolated points. Bilinear sampling on a grid is
  separable, so a RoI's pooled map is `A_y @ F @ A_x^T` with interpolation matrices
  `A_y [out_h, H]`, `A_x [out_w, W]`: two small matmuls, exact gradients for the
  features and the box coordinates.

Documented results rather than errors, as these arrive traced from a network:
an RoI partly outside the feature map pools only what lies inside (RoIAlign samples
more than one cell outside count as zero; RoI pooling clips its bins); a bin or an RoI
entirely outside gives zeros. An inverted box (x2 < x1 or y2 < y1) keeps its negative
size with RoIAlign `aligned=True` (samples run back from (x1, y1)), is at least one
cell with `aligned=False`, and is one cell wide with RoI pooling: all as torchvision
does. An empty RoI set (R = 0) gives `[0, out_h, out_w, C]`.
"""

from __future__ import annotations

import jax.numpy as jnp
from jax import lax

from cnn_lab.errors import fail
from cnn_lab.ops._checks import tuple_arg


def _check(features, boxes, output_size, spatial_scale):
  if jnp.ndim(features) != 3:
    raise fail("features", "one image's features [H, W, C] (vmap over a batch)",
               f"shape {jnp.shape(features)}")
  if jnp.ndim(boxes) != 2 or jnp.shape(boxes)[-1] != 4:
    raise fail("boxes", "RoIs [R, 4] as (x1, y1, x2, y2)", f"shape {jnp.shape(boxes)}")
  if not isinstance(spatial_scale, (int, float)) or not spatial_scale > 0:
    raise fail("spatial_scale", "a positive number (feature cells per input unit)",
               spatial_scale)
  return tuple_arg(output_size, 2, "output_size")


def _align_weights(start, size, bins: int, samples: int, length: int):
  """Averaged bilinear weights along one axis: `[R] x [R] -> [R, bins, length]`.

  Points sit at the centres of `samples` equal steps inside each bin; a point more than
  one cell outside `[0, length]` counts as zero, one in the border cell is clamped.
  """
  steps = jnp.arange(bins)[:, None] + (jnp.arange(samples)[None, :] + 0.5) / samples
  pos = start[:, None, None] + (size / bins)[:, None, None] * steps  # [R, bins, samples]
  inside = (pos >= -1.0) & (pos <= length)
  pos = jnp.clip(pos, 0.0, length - 1.0)
  low = jnp.floor(pos)
  frac = (pos - low)[..., None]
  cells = jnp.arange(length, dtype=pos.dtype)
  weights = ((cells == low[..., None]) * (1.0 - frac) +
             (cells == low[..., None] + 1.0) * frac)
  return jnp.mean(weights * inside[..., None], axis=2)


def roi_align(features, boxes, output_size, *, spatial_scale: float = 1.0,
              sampling_ratio: int = 2, aligned: bool = True):
  """RoIAlign: `[H, W, C]`, `[R, 4]` -> `[R, out_h, out_w, C]` (see the module docstring).

  `sampling_ratio`: points per bin along each axis (fixed, so shapes stay static;
  torchvision's adaptive `-1` depends on the RoI's size). `aligned=True` shifts boxes by
  half a cell so that a box's corners map onto cell corners (Detectron2's default);
  `aligned=False` is the original Mask R-CNN's, with RoIs at least one cell in size.
  """
  out_h, out_w = _check(features, boxes, output_size, spatial_scale)
  if not isinstance(sampling_ratio, int) or isinstance(sampling_ratio, bool) or \
      sampling_ratio < 1:
    raise fail("sampling_ratio", "an int >= 1 (points per bin along each axis)",
               sampling_ratio)
  height, width, _ = features.shape
  boxes = jnp.asarray(boxes, features.dtype) * spatial_scale - (0.5 if aligned else 0.0)
  x1, y1, x2, y2 = (boxes[:, i] for i in range(4))
  h, w = y2 - y1, x2 - x1
  if not aligned:  # torchvision forces malformed RoIs to 1 x 1 only without alignment
    h, w = jnp.maximum(h, 1.0), jnp.maximum(w, 1.0)
  ay = _align_weights(y1, h, out_h, sampling_ratio, height)
  ax = _align_weights(x1, w, out_w, sampling_ratio, width)
  return jnp.einsum("rah,hwc,rbw->rabc", ay, features, ax)


def _round_half_away(x):
  """C's round() (halves away from zero), exactly: `floor(|x| + 0.5)` rounds up values
  just below a half whose sum with 0.5 rounds to the next integer."""
  whole = jnp.trunc(x)
  return whole + jnp.sign(x) * (jnp.abs(x - whole) >= 0.5)


def _pool_bins(start, end, bins: int, length: int, dtype):
  """Whole-cell bins along one axis -> membership `[R, bins, length]` (bool).

  As torchvision's kernel computes them, in the features' floating type: an RoI of
  n = end - start + 1 cells (at least 1) has bin size n / bins, and bin i spans cells
  [floor(i * size), ceil((i + 1) * size)) from `start`, clipped to the map. That
  floating-point rounding puts some last bins one cell past the RoI (n = 57 in 7 bins
  ends at 58 in float32); we follow it so that pooled features match torchvision's bin
  for bin. The divisor is an array behind a barrier: XLA turns a division by a
  broadcast constant into a multiplication by its reciprocal, which moves edges.
  """
  start = start.astype(jnp.int32)
  n = jnp.maximum(end.astype(jnp.int32) - start + 1, 1)
  divisor = lax.optimization_barrier(jnp.full(n.shape, bins, dtype))
  size = (n.astype(dtype) / divisor)[:, None]
  index = jnp.arange(bins, dtype=dtype)[None, :]
  lo = jnp.clip(jnp.floor(index * size).astype(jnp.int32) + start[:, None], 0, length)
  hi = jnp.clip(jnp.ceil((index + 1) * size).astype(jnp.int32) + start[:, None], 0, length)
  cells = jnp.arange(length, dtype=jnp.int32)
  return (cells >= lo[..., None]) & (cells < hi[..., None])


def roi_max_pool(features, boxes, output_size, *, spatial_scale: float = 1.0):
  """RoI max pooling: `[H, W, C]`, `[R, 4]` -> `[R, out_h, out_w, C]`; empty bins give 0.

  The maximum over a rectangle is the maximum over columns of the maximum over rows, so
  each RoI is two masked reductions. Tied maxima share the gradient (torchvision gives
  it to the first); with real-valued features ties do not occur.
  """
  out_h, out_w = _check(features, boxes, output_size, spatial_scale)
  height, width, _ = features.shape
  # torchvision's arithmetic type: the features' (float32 for half precision); its
  # spatial_scale is a C float, so float32 even for float64 features.
  dtype = features.dtype if features.dtype in (jnp.float32, jnp.float64) else jnp.float32
  scale = jnp.asarray(jnp.float32(spatial_scale), dtype)
  cells = _round_half_away(jnp.asarray(boxes, dtype) * scale)
  rows = _pool_bins(cells[:, 1], cells[:, 3], out_h, height, dtype)  # [R, out_h, H]
  cols = _pool_bins(cells[:, 0], cells[:, 2], out_w, width, dtype)  # [R, out_w, W]
  low = jnp.asarray(-jnp.inf, features.dtype)
  by_rows = jnp.max(jnp.where(rows[..., None, None], features, low), axis=2)  # [R, a, W, C]
  pooled = jnp.max(jnp.where(cols[:, None, :, :, None], by_rows[:, :, None], low), axis=3)
  empty = ~(jnp.any(rows, -1)[:, :, None] & jnp.any(cols, -1)[:, None, :])
  return jnp.where(empty[..., None], jnp.zeros((), features.dtype), pooled)
