"""YOLOv2 with anchor boxes (Redmon and Farhadi 2016): dimension clusters, targets,
decoding, the loss and inference, as pure functions.

Predictions are `[..., S, S, B, 5 + K]` raw values `(t_x, t_y, t_w, t_h, t_o, logits)`
for an S x S grid and B anchors `(w, h)` given as fractions of the image. They decode as
  b_x = (sigmoid(t_x) + column) / S,   b_w = anchor_w * exp(t_w),
  b_y = (sigmoid(t_y) + row) / S,      b_h = anchor_h * exp(t_h),
  objectness = sigmoid(t_o),           class probabilities = softmax(logits).
Each ground-truth object is assigned to the cell holding its centre and, there, to the
anchor whose shape (w, h placed at a common centre) has the highest IoU with it.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from cnn_lab.errors import fail
from cnn_lab.ops import boxes as box_ops


def shape_iou(wh_a, wh_b, xp=jnp):
  """IoU of box shapes placed at one centre: `[N, 2] x [K, 2] -> [N, K]`."""
  inter = xp.minimum(wh_a[:, None, 0], wh_b[None, :, 0]) * \
      xp.minimum(wh_a[:, None, 1], wh_b[None, :, 1])
  union = (wh_a[:, 0] * wh_a[:, 1])[:, None] + (wh_b[:, 0] * wh_b[:, 1])[None, :] - inter
  return inter / xp.maximum(union, 1e-12)


def kmeans_anchors(wh: np.ndarray, k: int, *, seed: int = 0, max_iter: int = 300):
  """YOLOv2's dimension clusters: k-means on box shapes with distance 1 - IoU.

  Args: wh `[N, 2]` box widths and heights (any unit), k clusters.
  Returns `(anchors [k, 2] sorted by area, mean IoU of each box with its best anchor)`.
  The centres are the mean shape of their members; a cluster left empty keeps its centre.
  """
  wh = np.asarray(wh, np.float64).reshape(-1, 2)
  wh = wh[np.all(wh > 0, 1)]
  if len(wh) < k:
    raise fail("wh", f"at least k={k} boxes of positive size", len(wh))
  rng = np.random.default_rng(seed)
  centres = wh[rng.choice(len(wh), k, replace=False)]
  assign = None
  for _ in range(max_iter):
    new = np.argmax(shape_iou(wh, centres, np), 1)
    if assign is not None and np.array_equal(new, assign):
      break
    assign = new
    for c in range(k):
      if np.any(assign == c):
        centres[c] = wh[assign == c].mean(0)
  centres = centres[np.argsort(centres[:, 0] * centres[:, 1])]
  return centres.astype(np.float32), float(np.max(shape_iou(wh, centres, np), 1).mean())


def encode_targets(boxes, classes, anchors, grid: int) -> dict:
  """One image's objects -> per-anchor training targets.

  Args:
    boxes: `[M, 4]` normalised xyxy; classes `[M]` int, -1 marks padding.
    anchors: `[B, 2]` normalised (w, h). grid: S.
  Returns: {"object": float `[S, S, B]` (1 where an object is assigned),
    "box": `[S, S, B, 4]` its xyxy box, "class": int `[S, S, B]`}.
  Two objects on one cell and anchor: the first in the list keeps it.
  """
  cx, cy, w, h = jnp.moveaxis(box_ops.convert(boxes, "xyxy", "cxcywh"), -1, 0)
  valid = (classes >= 0) & (w > 0) & (h > 0)
  col = jnp.clip(jnp.floor(cx * grid), 0, grid - 1).astype(jnp.int32)
  row = jnp.clip(jnp.floor(cy * grid), 0, grid - 1).astype(jnp.int32)
  best = jnp.argmax(shape_iou(jnp.stack([w, h], -1), anchors), -1)
  slot = (row * grid + col) * anchors.shape[0] + best
  m = boxes.shape[0]
  earlier = jnp.tril(jnp.ones((m, m), bool), -1)
  taken = jnp.any(earlier & (slot[:, None] == slot[None, :]) & valid[None, :], 1)
  keep = valid & ~taken
  index = jnp.where(keep, slot, grid * grid * anchors.shape[0])  # out of range: dropped
  size = grid * grid * anchors.shape[0]
  obj = jnp.zeros(size).at[index].set(1.0, mode="drop")
  box = jnp.zeros((size, 4)).at[index].set(boxes, mode="drop")
  cls = jnp.zeros(size, jnp.int32).at[index].set(classes.astype(jnp.int32), mode="drop")
  shape = (grid, grid, anchors.shape[0])
  return {"object": obj.reshape(shape), "box": box.reshape(*shape, 4),
          "class": cls.reshape(shape)}


def _cells(grid: int):
  rows, cols = jnp.meshgrid(jnp.arange(grid), jnp.arange(grid), indexing="ij")
  return rows[:, :, None].astype(jnp.float32), cols[:, :, None].astype(jnp.float32)


def decode(predictions, anchors):
  """`[S, S, B, 5 + K]` raw -> (boxes `[S, S, B, 4]` normalised xyxy, objectness logits
  `[S, S, B]`, class logits `[S, S, B, K]`). `t_w, t_h` are capped at 4 (e^4 x the anchor)."""
  grid = predictions.shape[0]
  rows, cols = _cells(grid)
  cx = (jax.nn.sigmoid(predictions[..., 0]) + cols) / grid
  cy = (jax.nn.sigmoid(predictions[..., 1]) + rows) / grid
  w = anchors[:, 0] * jnp.exp(jnp.minimum(predictions[..., 2], 4.0))
  h = anchors[:, 1] * jnp.exp(jnp.minimum(predictions[..., 3], 4.0))
  boxes = box_ops.convert(jnp.stack([cx, cy, w, h], -1), "cxcywh", "xyxy")
  return boxes, predictions[..., 4], predictions[..., 5:]


@dataclasses.dataclass(frozen=True)
class YoloLossWeights:
  """YOLOv2's loss terms and their weights (all config values)."""
  coord: float = 5.0
  object: float = 1.0
  no_object: float = 1.0
  classes: float = 1.0
  ignore_iou: float = 0.6  # no "no object" penalty for a prediction this close to an object


def yolo_loss(predictions, boxes, classes, anchors, weights: YoloLossWeights):
  """One image: raw `[S, S, B, 5 + K]`, objects `[M, 4]`/`[M]` -> (loss, {term: value}).

  coord: squared error of sigmoid(t_xy) against the centre's offset in its cell and of
  t_wh against log(box / anchor), on assigned anchors; object: binary cross-entropy
  of t_o towards 1 on assigned anchors; no_object: towards 0 elsewhere, except where
  the decoded box already overlaps some object by more than `ignore_iou`; classes:
  softmax cross-entropy on assigned anchors. Each term is summed over the grid.
  """
  grid = predictions.shape[0]
  target = encode_targets(boxes, classes, anchors, grid)
  obj = target["object"]
  pred_boxes, obj_logits, class_logits = decode(predictions, anchors)

  rows, cols = _cells(grid)
  cx, cy, w, h = jnp.moveaxis(box_ops.convert(target["box"], "xyxy", "cxcywh"), -1, 0)
  xy_target = jnp.stack([cx * grid - cols, cy * grid - rows], -1)
  safe = lambda v: jnp.where(obj > 0, v, 1.0)  # log of empty slots' zeros never taken
  wh_target = jnp.stack([jnp.log(safe(w) / anchors[:, 0]), jnp.log(safe(h) / anchors[:, 1])],
                        -1)
  coord = jnp.sum(obj[..., None] * ((jax.nn.sigmoid(predictions[..., :2]) - xy_target) ** 2 +
                                    (predictions[..., 2:4] - wh_target) ** 2))

  valid = classes >= 0
  overlap = box_ops.iou(pred_boxes.reshape(-1, 4), boxes)
  best = jnp.max(jnp.where(valid[None, :], overlap, 0.0), 1, initial=0.0).reshape(obj.shape)
  ignore = jax.lax.stop_gradient(best) > weights.ignore_iou
  bce_one = jax.nn.softplus(-obj_logits)  # -log sigmoid(t)
  bce_zero = jax.nn.softplus(obj_logits)  # -log (1 - sigmoid(t))
  object_term = jnp.sum(obj * bce_one)
  no_object = jnp.sum((1.0 - obj) * ~ignore * bce_zero)
  log_probs = jax.nn.log_softmax(class_logits)
  class_term = -jnp.sum(obj * jnp.take_along_axis(log_probs, target["class"][..., None],
                                                  -1)[..., 0])
  loss = (weights.coord * coord + weights.object * object_term +
          weights.no_object * no_object + weights.classes * class_term)
  return loss, {"coord": coord, "object": object_term, "no_object": no_object,
                "classes": class_term}


@dataclasses.dataclass(frozen=True)
class PostProcess:
  """Scores, threshold and NMS: raw `[S, S, B, 5 + K]` -> fixed-size detections."""
  score_threshold: float = 0.05
  iou_threshold: float = 0.45
  max_detections: int = 50
  class_aware: bool = True  # NMS only among boxes of the same class

  def __call__(self, predictions, anchors) -> dict:
    """-> {"boxes": `[D, 4]` xyxy clipped to [0, 1], "scores": `[D]`, "classes": `[D]`
    (-1 and score 0 on padding), "count": ()}; D = max_detections. Vmap for batches.

    score = objectness x the best class probability (one class per box).
    """
    boxes, obj_logits, class_logits = decode(predictions, anchors)
    probs = jax.nn.sigmoid(obj_logits)[..., None] * jax.nn.softmax(class_logits)
    k = probs.shape[-1]
    probs, boxes = probs.reshape(-1, k), jnp.clip(boxes.reshape(-1, 4), 0.0, 1.0)
    classes, scores = jnp.argmax(probs, -1), jnp.max(probs, -1)
    index, count = box_ops.nms(boxes, scores, self.iou_threshold, self.max_detections,
                               self.score_threshold,
                               classes=classes if self.class_aware else None)
    return box_ops.kept(index, count, boxes, scores, classes)
