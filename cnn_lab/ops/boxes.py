"""Box ops: format conversions, pairwise IoU and greedy non-maximum suppression.

Pure `jax.numpy`; jit- and vmap-able. Formats of the last axis (size 4):
  xyxy    (x1, y1, x2, y2) corners
  yxyx    (y1, x1, y2, x2) corners, TensorFlow's order (and TFDS `bbox`)
  cxcywh  (cx, cy, w, h)
`iou` and `nms` take either corner format, the same for every box (IoU is unchanged
by swapping the x and y axes). Conventions, for traced values where no error can be
raised: a box with x2 < x1 or y2 < y1 has zero area; zero-area boxes have IoU 0 with
every box (no "+1" pixel convention); NaN coordinates or scores make a box no NMS
candidate. Shapes, ranks and Python-number arguments are checked at trace time.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from cnn_lab.errors import fail

FORMATS = ("xyxy", "yxyx", "cxcywh")


def _check_boxes(boxes, argument: str = "boxes", rank: int | None = None):
  shape = jnp.shape(boxes)
  if not shape or shape[-1] != 4:
    raise fail(argument, "an array whose last axis has size 4", f"shape {shape}")
  if rank is not None and len(shape) != rank:
    raise fail(argument, f"rank {rank} ([N, 4])", f"shape {shape}")


def convert(boxes, source: str, target: str):
  """Boxes `[..., 4]` from format `source` to `target` (see the module docstring)."""
  for name, value in (("source", source), ("target", target)):
    if value not in FORMATS:
      raise fail(name, f"one of {FORMATS}", value)
  _check_boxes(boxes)
  if source == target:
    return boxes
  a, b, c, d = jnp.moveaxis(jnp.asarray(boxes), -1, 0)
  if source == "yxyx":
    a, b, c, d = b, a, d, c
  elif source == "cxcywh":
    a, b, c, d = a - c / 2, b - d / 2, a + c / 2, b + d / 2
  # (a, b, c, d) is now xyxy
  if target == "yxyx":
    a, b, c, d = b, a, d, c
  elif target == "cxcywh":
    a, b, c, d = (a + c) / 2, (b + d) / 2, c - a, d - b
  return jnp.stack([a, b, c, d], -1)


def area(boxes):
  """`[..., 4]` corner boxes -> `[...]` areas; inverted sides count as zero."""
  _check_boxes(boxes)
  boxes = jnp.asarray(boxes)
  return (jnp.maximum(boxes[..., 2] - boxes[..., 0], 0) *
          jnp.maximum(boxes[..., 3] - boxes[..., 1], 0))


def iou(a, b):
  """Pairwise intersection over union: `[N, 4]` x `[M, 4]` corner boxes -> `[N, M]`.

  Zero-area boxes and disjoint pairs give 0 (never NaN from 0/0).
  """
  _check_boxes(a, "a", rank=2)
  _check_boxes(b, "b", rank=2)
  a, b = jnp.asarray(a), jnp.asarray(b)
  lo = jnp.maximum(a[:, None, :2], b[None, :, :2])
  hi = jnp.minimum(a[:, None, 2:], b[None, :, 2:])
  inter = jnp.prod(jnp.maximum(hi - lo, 0), -1)
  union = area(a)[:, None] + area(b)[None, :] - inter
  return jnp.where(union > 0, inter / jnp.where(union > 0, union, 1), 0.0)


def elementwise_iou(a, b):
  """IoU of matching boxes: `[..., 4]` and `[..., 4]` (broadcast) -> `[...]`."""
  _check_boxes(a, "a")
  _check_boxes(b, "b")
  a, b = jnp.asarray(a), jnp.asarray(b)
  inter = jnp.prod(jnp.maximum(jnp.minimum(a[..., 2:], b[..., 2:]) -
                               jnp.maximum(a[..., :2], b[..., :2]), 0), -1)
  union = area(a) + area(b) - inter
  return jnp.where(union > 0, inter / jnp.where(union > 0, union, 1), 0.0)


def _check_threshold(value, argument: str) -> None:
  if isinstance(value, (int, float, np.floating, np.integer)) and not 0.0 <= value <= 1.0:
    raise fail(argument, "a number in [0, 1]", value)


def nms(boxes, scores, iou_threshold: float, max_outputs: int,
        score_threshold: float = -np.inf, classes=None):
  """Greedy non-maximum suppression.

  Args:
    boxes: `[N, 4]` corner boxes (xyxy or yxyx).
    scores: `[N]`.
    iou_threshold: in [0, 1]; a box is suppressed when its IoU with an already
      kept box is strictly greater than this.
    max_outputs: static length of the result.
    score_threshold: only boxes whose score is strictly greater are candidates
      (compared in float32; NaN scores and boxes with NaN coordinates never are).
    classes: optional int `[N]`; when given, a box only suppresses boxes of its own
      class (class-aware NMS).

  Returns:
    `(indices, count)`: int32 `[max_outputs]` indices into `boxes` of the kept boxes,
    by descending score (equal scores: lower index first), padded with -1; and the
    int32 number of kept boxes. Empty inputs give all -1 and 0.
  """
  _check_boxes(boxes, rank=2)
  n = boxes.shape[0]
  if jnp.shape(scores) != (n,):
    raise fail("scores", f"shape ({n},) to match boxes {tuple(boxes.shape)}",
               f"shape {jnp.shape(scores)}")
  if classes is not None and jnp.shape(classes) != (n,):
    raise fail("classes", f"shape ({n},) to match boxes {tuple(boxes.shape)}",
               f"shape {jnp.shape(classes)}")
  if not isinstance(max_outputs, (int, np.integer)) or max_outputs < 0:
    raise fail("max_outputs", "a non-negative int", max_outputs)
  _check_threshold(iou_threshold, "iou_threshold")
  if n == 0 or max_outputs == 0:
    return jnp.full((max_outputs,), -1, jnp.int32), jnp.zeros((), jnp.int32)
  return _greedy_nms(jnp.asarray(boxes, jnp.float32), jnp.asarray(scores, jnp.float32),
                     None if classes is None else jnp.asarray(classes, jnp.int32),
                     iou_threshold, score_threshold, max_outputs)


@functools.partial(jax.jit, static_argnums=(5,))
def _greedy_nms(boxes, scores, classes, iou_threshold, score_threshold, max_outputs):
  # Candidates in score order; a stable sort keeps the lower index first on ties.
  order = jnp.argsort(-scores, stable=True)
  boxes, scores = boxes[order], scores[order]
  same_class = (lambda i: classes[order] == classes[order][i]) if classes is not None else \
      (lambda i: True)
  finite = jnp.all(jnp.isfinite(boxes), -1) & ~jnp.isnan(scores)
  alive = finite & (scores > score_threshold)
  areas = area(boxes)

  def body(carry):
    alive, kept, count = carry
    i = jnp.argmax(alive)  # the best remaining candidate
    lo = jnp.maximum(boxes[i, :2], boxes[:, :2])
    hi = jnp.minimum(boxes[i, 2:], boxes[:, 2:])
    inter = jnp.prod(jnp.maximum(hi - lo, 0), -1)
    union = areas[i] + areas - inter
    overlap = jnp.where(union > 0, inter / jnp.where(union > 0, union, 1), 0.0)
    alive = alive & ~((overlap > iou_threshold) & same_class(i))
    alive = alive.at[i].set(False)
    return alive, kept.at[count].set(order[i].astype(jnp.int32)), count + 1

  def cond(carry):
    alive, _, count = carry
    return jnp.any(alive) & (count < max_outputs)

  kept = jnp.full((max_outputs,), -1, jnp.int32)
  _, kept, count = jax.lax.while_loop(cond, body, (alive, kept, jnp.zeros((), jnp.int32)))
  return kept, count


def kept(index, count, boxes, scores, classes) -> dict:
  """`nms`'s padded `(index, count)` -> fixed-size detections {"boxes" `[D, 4]`,
  "scores" `[D]`, "classes" `[D]`, "count"}, zeros (class -1) on padding rows."""
  found = index >= 0
  safe = jnp.where(found, index, 0)
  return {"boxes": jnp.where(found[:, None], boxes[safe], 0.0),
          "scores": jnp.where(found, scores[safe], 0.0),
          "classes": jnp.where(found, classes[safe], -1), "count": count}


def batched_nms(boxes, scores, iou_threshold: float, max_outputs: int,
                score_threshold: float = -np.inf, classes=None):
  """`nms` over a batch under `jax.vmap`: boxes `[B, N, 4]`, scores `[B, N]`
  (classes `[B, N]`) -> indices `[B, max_outputs]`, counts `[B]`."""
  _check_boxes(boxes, rank=3)
  single = functools.partial(nms, iou_threshold=iou_threshold, max_outputs=max_outputs,
                             score_threshold=score_threshold)
  if classes is None:
    return jax.vmap(lambda b, s: single(b, s))(boxes, scores)
  return jax.vmap(lambda b, s, c: single(b, s, classes=c))(boxes, scores, classes)
