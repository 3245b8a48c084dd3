"""Evaluation by per-batch sums over a whole split, every example counted exactly once."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import jax
import jax.numpy as jnp
import numpy as np

from cnn_lab.errors import fail


def _host_total(*values) -> np.ndarray:
  """The sum of per-batch values, integers in int64 and floats in float64."""
  first = np.asarray(values[0])
  kind = np.int64 if np.issubdtype(first.dtype, np.integer) else np.float64
  return np.sum([np.asarray(v, kind) for v in values], axis=0, dtype=kind)


def sum_batches(eval_step: Callable, state, batches: Iterable) -> dict | None:
  """Adds the per-batch sums `eval_step(state, batch)` over `batches` on the host:
  integers in int64 and floats in float64, so that counts stay exact over a split of
  any size (each batch's own sums are int32 / float32 on the device). Every step is
  dispatched before any result is fetched."""
  results = [eval_step(state, batch) for batch in batches]
  return jax.tree.map(_host_total, *jax.device_get(results)) if results else None


def evaluate_classification(eval_step: Callable, state, batches: Iterable,
                            prefix: str = "eval/") -> Iterator[tuple[str, float]]:
  """Adds the per-batch sums of `eval_step(state, batch)` (count, loss, correct) over
  `batches` and yields `(prefix + "loss", mean)`, `(prefix + "accuracy", fraction)` and
  `(prefix + "count", examples)`."""
  totals = sum_batches(eval_step, state, batches)
  count = float(totals["count"])
  yield prefix + "loss", float(totals["loss"]) / max(count, 1.0)
  yield prefix + "accuracy", float(totals["correct"]) / max(count, 1.0)
  yield prefix + "count", count


# ------------------------------------------------------------- doing well on benchmarks
# Test-time augmentation and ensembles (the course's "state of computer vision"):
# average the class probabilities of several views of each image and/or several
# independently trained models. They cost inference time, never training time.

SHIFTS = {1: ((0, 0),),
          5: ((0, 0), (-1, 0), (1, 0), (0, -1), (0, 1)),
          9: tuple((dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1))}


def shifted_view(images, dy: int, dx: int):
  """`[N, H, W, C]` moved by (dy, dx) pixels, the uncovered border repeating the edge
  (the background, for digits); the same shape."""
  if not (dy or dx):
    return images
  p = max(abs(dy), abs(dx))
  padded = jnp.pad(images, ((0, 0), (p, p), (p, p), (0, 0)), mode="edge")
  h, w = images.shape[1:3]
  return padded[:, p - dy:p - dy + h, p - dx:p - dx + w]


def check_crops(crops: int) -> tuple:
  if crops not in SHIFTS:
    raise fail("crops", f"one of {sorted(SHIFTS)} (the centre, +4 or +8 one-pixel shifts)",
               crops)
  return SHIFTS[crops]


def tta_probabilities(logits_fn: Callable, images, crops: int = 1):
  """Mean softmax probabilities `[N, K]` of `logits_fn` over `crops` one-pixel-shifted
  views of `images` `[N, H, W, C]` (1: the image alone)."""
  views = [jax.nn.softmax(logits_fn(shifted_view(images, dy, dx)).astype(jnp.float32), -1)
           for dy, dx in check_crops(crops)]
  return sum(views) / len(views)


def confusion_matrix(truth, predicted, num_classes: int, mask=None):
  """`[K, K]` int32 counts, row = true class, column = predicted; jit-able, the one
  confusion matrix of classification and segmentation alike.

  truth, predicted: ints of one shape, e.g. `[N]` labels or `[N, H, W]` pixels; mask:
  optional bool `[N]` (padded examples count nothing). Integer counts are exact up to
  2**31 - 1 per call (float32 would stop at 2**24); `sum_batches` adds calls in int64.
  """
  truth, predicted = jnp.asarray(truth), jnp.asarray(predicted)
  weight = jnp.ones(truth.shape, jnp.int32)
  if mask is not None:
    mask = jnp.asarray(mask, jnp.int32)
    weight = weight * mask.reshape(mask.shape + (1,) * (truth.ndim - mask.ndim))
  index = (truth.reshape(-1) * num_classes + predicted.reshape(-1)).astype(jnp.int32)
  counts = jnp.zeros(num_classes * num_classes, jnp.int32).at[index].add(weight.reshape(-1))
  return counts.reshape(num_classes, num_classes)
