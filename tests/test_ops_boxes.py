"""Box conversions, IoU and NMS against plain numpy references."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cnn_lab.ops import boxes as B


def reference_iou(a, b):
  out = np.zeros((len(a), len(b)))
  for i, p in enumerate(a):
    for j, q in enumerate(b):
      w = max(min(p[2], q[2]) - max(p[0], q[0]), 0)
      h = max(min(p[3], q[3]) - max(p[1], q[1]), 0)
      inter = w * h
      union = (max(p[2] - p[0], 0) * max(p[3] - p[1], 0) +
               max(q[2] - q[0], 0) * max(q[3] - q[1], 0) - inter)
      out[i, j] = inter / union if union > 0 else 0.0
  return out


def reference_nms(boxes, scores, thr, max_outputs, score_threshold=-np.inf, classes=None):
  """Plain greedy NMS, written as the definition reads."""
  score_threshold = np.float32(score_threshold)  # compared in the scores' dtype
  candidates = [i for i in range(len(scores)) if scores[i] > score_threshold
                and np.all(np.isfinite(boxes[i]))]
  candidates.sort(key=lambda i: (-scores[i], i))
  kept = []
  for i in candidates:
    if len(kept) == max_outputs:
      break
    if all(reference_iou(boxes[[i]], boxes[[k]])[0, 0] <= thr or
           (classes is not None and classes[i] != classes[k]) for k in kept):
      kept.append(i)
  return kept


def random_boxes(rng, n, degenerate=0.2, grid=None):
  xy = rng.uniform(0, 10, (n, 2))
  wh = rng.uniform(0, 4, (n, 2))
  if grid:  # coordinates on a coarse grid: many identical boxes and exact ties
    xy, wh = np.round(xy / grid) * grid, np.round(wh / grid) * grid
  boxes = np.concatenate([xy, xy + wh], 1)
  flip = rng.uniform(size=n) < degenerate  # some inverted (x2 < x1) or zero-width boxes
  boxes[flip, 2] = boxes[flip, 0] - rng.choice([0.0, 1.0], flip.sum())
  return boxes.astype(np.float32)


def test_convert_roundtrips_and_known_values():
  xyxy = np.array([[1.0, 2.0, 5.0, 10.0]])
  np.testing.assert_allclose(B.convert(xyxy, "xyxy", "yxyx"), [[2, 1, 10, 5]])
  np.testing.assert_allclose(B.convert(xyxy, "xyxy", "cxcywh"), [[3, 6, 4, 8]])
  rng = np.random.default_rng(0)
  boxes = random_boxes(rng, 20, degenerate=0)
  for fmt in B.FORMATS:
    for other in B.FORMATS:
      there = B.convert(boxes, "xyxy", fmt)
      back = B.convert(B.convert(there, fmt, other), other, "xyxy")
      np.testing.assert_allclose(back, boxes, atol=1e-5)


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 10_000), st.integers(0, 7), st.integers(0, 7))
def test_iou_matches_reference(seed, n, m):
  rng = np.random.default_rng(seed)
  a, b = random_boxes(rng, n), random_boxes(rng, m)
  np.testing.assert_allclose(jax.jit(B.iou)(a, b), reference_iou(a, b), atol=1e-6)  # one
  if n == m:                                                    # program, not op by op
    np.testing.assert_allclose(jax.jit(B.elementwise_iou)(a, b),
                               np.diag(reference_iou(a, b)), atol=1e-6)


def test_iou_edge_cases():
  a = jnp.array([[0.0, 0, 2, 2], [0, 0, 0, 0], [3, 3, 1, 1]])
  b = jnp.array([[0.0, 0, 2, 2], [2, 2, 4, 4], [0, 0, 0, 0]])
  np.testing.assert_array_equal(B.iou(a, b), [[1, 0, 0], [0, 0, 0], [0, 0, 0]])
  assert B.iou(jnp.zeros((0, 4)), b).shape == (0, 3)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 40), st.sampled_from([0.0, 0.3, 0.5, 1.0]),
       st.sampled_from([None, 0.5, 1.0]), st.integers(1, 12), st.booleans())
def test_nms_matches_greedy_reference(seed, n, thr, grid, max_outputs, class_aware):
  rng = np.random.default_rng(seed)
  boxes = random_boxes(rng, n, grid=grid)
  scores = np.round(rng.uniform(0, 1, n), 1).astype(np.float32)  # many ties
  classes = rng.integers(0, 3, n) if class_aware else None
  score_threshold = rng.choice([-np.inf, 0.3])
  idx, count = B.nms(boxes, scores, thr, max_outputs, score_threshold, classes=classes)
  expected = reference_nms(boxes, scores, thr, max_outputs, score_threshold, classes)
  assert int(count) == len(expected)
  np.testing.assert_array_equal(idx, expected + [-1] * (max_outputs - len(expected)))


def test_nms_semantics_stated_in_the_docstring():
  boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 5], [20, 20, 30, 30]],
                   np.float32)
  scores = np.array([0.9, 0.9, 0.8, 0.1], np.float32)
  # Equal scores: lower index first; IoU exactly at the threshold is not suppressed.
  idx, count = B.nms(boxes, scores, 0.5, 5)
  np.testing.assert_array_equal(idx, [0, 2, 3, -1, -1])
  assert int(count) == 3
  # Strict score threshold: 0.1 is not > 0.1.
  idx, count = B.nms(boxes, scores, 0.5, 5, score_threshold=0.1)
  np.testing.assert_array_equal(idx, [0, 2, -1, -1, -1])
  # Class-aware: boxes of other classes are never suppressed.
  idx, _ = B.nms(boxes, scores, 0.4, 5, classes=np.array([0, 1, 0, 0]))
  np.testing.assert_array_equal(idx, [0, 1, 3, -1, -1])


def test_nms_nan_degenerate_and_empty_inputs():
  boxes = np.array([[0, 0, 1, 1], [np.nan, 0, 1, 1], [0, 0, 1, 1], [5, 5, 4, 4]], np.float32)
  scores = np.array([np.nan, 0.9, 0.5, 0.7], np.float32)
  idx, count = B.nms(boxes, scores, 0.5, 4)
  # NaN score and NaN box are no candidates; the inverted box has zero area and survives.
  np.testing.assert_array_equal(idx, [3, 2, -1, -1])
  idx, count = B.nms(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), 0.5, 3)
  np.testing.assert_array_equal(idx, [-1, -1, -1])
  assert int(count) == 0


def test_batched_and_jitted_nms_equal_single():
  rng = np.random.default_rng(3)
  boxes = np.stack([random_boxes(rng, 30) for _ in range(4)])
  scores = rng.uniform(size=(4, 30)).astype(np.float32)
  classes = rng.integers(0, 2, (4, 30))
  batched = jax.jit(lambda b, s, c: B.batched_nms(b, s, 0.3, 8, classes=c))
  idx, count = batched(boxes, scores, classes)
  for k in range(4):
    one, n = B.nms(boxes[k], scores[k], 0.3, 8, classes=classes[k])
    np.testing.assert_array_equal(idx[k], one)
    assert int(count[k]) == int(n)


@pytest.mark.parametrize("call, message", [
    (lambda: B.iou(np.zeros((3, 5)), np.zeros((2, 4))), "a: expected an array whose last"),
    (lambda: B.iou(np.zeros((4,)), np.zeros((2, 4))), "a: expected rank 2"),
    (lambda: B.nms(np.zeros((3, 4)), np.zeros((2,)), 0.5, 2), "scores: expected shape (3,)"),
    (lambda: B.nms(np.zeros((3, 4)), np.zeros((3,)), 1.5, 2), "iou_threshold: expected a nu"),
    (lambda: B.nms(np.zeros((3, 4)), np.zeros((3,)), -0.1, 2), "iou_threshold: expected a n"),
    (lambda: B.nms(np.zeros((3, 4)), np.zeros((3,)), 0.5, -1), "max_outputs: expected"),
    (lambda: B.convert(np.zeros((3, 4)), "xywh", "xyxy"), "source: expected one of"),
])
def test_bad_input_is_named(call, message):
  with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
    call()
