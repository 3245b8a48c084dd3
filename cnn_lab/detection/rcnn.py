"""Two-stage detection (Ren et al. 2015, Faster R-CNN) as pure, per-image functions.

Stage one, the region proposal network (RPN), scores a fixed set of anchors (several
sizes and aspect ratios centred on every feature cell) as object / not object and
regresses a box delta for each; the best decoded anchors, after NMS, are the
proposals. Stage two pools a fixed-size feature per proposal (RoI pooling or
RoIAlign, `cnn_lab.ops.roi`) and classifies it into K classes + background, with one
box refinement per class. Everything is vmapped over a batch by the model
(`cnn_lab.models.detection.FasterRCNN`); boxes are normalised `(x1, y1, x2, y2)`.

Box deltas are R-CNN's parametrisation of a box against a reference (anchor or
proposal), scaled by `weights`:
  t_x = w_x (c_x - c'_x) / w',  t_y = w_y (c_y - c'_y) / h',
  t_w = w_w log(w / w'),        t_h = w_h log(h / h').
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

from cnn_lab.errors import fail
from cnn_lab.ops import boxes as box_ops

# exp() of a decoded log-size is capped here (torchvision's log(1000 / 16))
MAX_LOG_SIZE = math.log(1000.0 / 16)


def anchor_grid(grid: int, sizes, aspect_ratios) -> np.ndarray:
  """Anchors `[grid * grid * A, 4]` normalised xyxy, A = len(sizes) * len(aspect_ratios).

  Row-major over cells (the order of a `[grid, grid, A]` head reshaped flat), then
  sizes, then ratios. An anchor of size s and ratio r = h / w has area s^2:
  w = s / sqrt(r), h = s sqrt(r); centres at cell centres.
  """
  if not sizes or not aspect_ratios or min(sizes) <= 0 or min(aspect_ratios) <= 0:
    raise fail("sizes, aspect_ratios", "non-empty sequences of positive numbers",
               (sizes, aspect_ratios))
  shapes = np.array([(s / math.sqrt(r), s * math.sqrt(r)) for s in sizes
                     for r in aspect_ratios])
  centres = (np.arange(grid) + 0.5) / grid
  cy, cx = np.meshgrid(centres, centres, indexing="ij")
  centre = np.stack([cx, cy], -1).reshape(-1, 1, 2)
  corners = np.concatenate([centre - shapes / 2, centre + shapes / 2], -1)
  return corners.reshape(-1, 4).astype(np.float32)


def encode_deltas(boxes, reference, weights=(1.0, 1.0, 1.0, 1.0)):
  """`boxes` against `reference` (both `[..., 4]` xyxy, positive size) -> deltas `[..., 4]`."""
  cx, cy, w, h = jnp.moveaxis(box_ops.convert(boxes, "xyxy", "cxcywh"), -1, 0)
  rx, ry, rw, rh = jnp.moveaxis(box_ops.convert(reference, "xyxy", "cxcywh"), -1, 0)
  wx, wy, ww, wh = weights
  return jnp.stack([wx * (cx - rx) / rw, wy * (cy - ry) / rh,
                    ww * jnp.log(w / rw), wh * jnp.log(h / rh)], -1)


def decode_deltas(deltas, reference, weights=(1.0, 1.0, 1.0, 1.0)):
  """Inverse of `encode_deltas`; log-sizes capped at `MAX_LOG_SIZE`. -> xyxy `[..., 4]`."""
  rx, ry, rw, rh = jnp.moveaxis(box_ops.convert(reference, "xyxy", "cxcywh"), -1, 0)
  wx, wy, ww, wh = weights
  cx = rx + deltas[..., 0] / wx * rw
  cy = ry + deltas[..., 1] / wy * rh
  w = rw * jnp.exp(jnp.minimum(deltas[..., 2] / ww, MAX_LOG_SIZE))
  h = rh * jnp.exp(jnp.minimum(deltas[..., 3] / wh, MAX_LOG_SIZE))
  return box_ops.convert(jnp.stack([cx, cy, w, h], -1), "cxcywh", "xyxy")


def overlaps(candidates, gt_boxes, gt_valid):
  """IoU `[A, M]` of candidates `[A, 4]` with object slots `[M, 4]`; -1 for padding slots
  (`gt_valid` False), which never match. M is static and at least one."""
  if gt_boxes.ndim != 2 or gt_boxes.shape[0] == 0:
    raise fail("gt_boxes", "[M, 4] with M >= 1 object slots (pad with class -1)",
               f"shape {gt_boxes.shape}")
  return jnp.where(gt_valid[None, :], box_ops.iou(candidates, gt_boxes), -1.0)


def match(candidates, gt_boxes, gt_valid):
  """Best object per candidate -> (IoU `[A]`, index `[A]`); no objects: IoU -1."""
  overlap = overlaps(candidates, gt_boxes, gt_valid)
  return jnp.max(overlap, 1), jnp.argmax(overlap, 1).astype(jnp.int32)


def objects(gt_boxes, gt_classes):
  """Which object slots hold a usable object: class >= 0 and a box of positive size."""
  return (gt_classes >= 0) & (box_ops.area(gt_boxes) > 0)


def sample_balanced(positive, negative, num: int, positive_fraction: float, key):
  """Random subsets of at most `num` candidates, at most `positive_fraction` of them
  positive, the rest filled with negatives: bool `[A]` x 2 -> (positives, negatives)."""
  k_pos, k_neg = jax.random.split(key)

  def pick(mask, count, k):
    priority = jnp.where(mask, jax.random.uniform(k, mask.shape), 2.0)  # 2: not a candidate
    rank = jnp.argsort(jnp.argsort(priority))
    return mask & (rank < count)

  num_pos = jnp.minimum(jnp.sum(positive), int(num * positive_fraction))
  pos = pick(positive, num_pos, k_pos)
  neg = pick(negative, num - num_pos, k_neg)
  return pos, neg


@dataclasses.dataclass(frozen=True)
class RPNSettings:
  """The RPN's training targets and its proposals (normalised units; config values)."""
  fg_iou: float = 0.7  # an anchor this close to an object is positive ...
  bg_iou: float = 0.3  # ... below this negative, in between ignored
  batch_per_image: int = 256  # anchors sampled per image for the loss
  positive_fraction: float = 0.5
  pre_nms_train: int = 600  # proposals: best anchors by objectness before NMS ...
  post_nms_train: int = 128  # ... and kept after it
  pre_nms_test: int = 300
  post_nms_test: int = 64
  nms_iou: float = 0.7
  min_size: float = 0.01  # proposals narrower or lower than this are dropped


def rpn_targets(anchors, gt_boxes, gt_classes, key, settings: RPNSettings):
  """Anchor labels and box targets of one image.

  An anchor is positive with IoU >= `fg_iou` with some object, or when it is (one of)
  the anchors closest to an object (so every object has one); negative with IoU below
  `bg_iou`. A balanced random sample of `batch_per_image` is kept.
  Returns `(labels [A]` int32: 1 positive, 0 negative, -1 not sampled,
  `deltas [A, 4]` towards the matched object).
  """
  valid = objects(gt_boxes, gt_classes)
  overlap = overlaps(anchors, gt_boxes, valid)
  best_iou, index = jnp.max(overlap, 1), jnp.argmax(overlap, 1)
  per_object = jnp.max(overlap, 0, initial=-1.0)  # [M]
  closest = jnp.any((overlap == per_object[None, :]) & valid[None, :] &
                    (per_object[None, :] > 0), 1)
  positive = (best_iou >= settings.fg_iou) | closest
  negative = (best_iou < settings.bg_iou) & ~positive
  pos, neg = sample_balanced(positive, negative, settings.batch_per_image,
                             settings.positive_fraction, key)
  labels = jnp.where(pos, 1, jnp.where(neg, 0, -1)).astype(jnp.int32)
  target = jnp.where(pos[:, None], gt_boxes[index], anchors)  # finite logs where unused
  return labels, encode_deltas(target, anchors)


def propose(logits, deltas, anchors, *, pre_nms: int, post_nms: int, nms_iou: float,
            min_size: float):
  """RPN outputs of one image -> proposals.

  Anchors are decoded and clipped to the image; those smaller than `min_size` (and
  non-finite ones) are dropped; the `pre_nms` best by objectness go through NMS at
  `nms_iou`; the best `post_nms` stay. Returns `(boxes [post_nms, 4]`, objectness
  logits `[post_nms]`, valid `[post_nms]` bool)`; fewer survivors are padded with
  invalid zero boxes (an image may have none: all invalid).
  """
  boxes = jnp.clip(decode_deltas(deltas, anchors), 0.0, 1.0)
  size_ok = ((boxes[:, 2] - boxes[:, 0]) >= min_size) & ((boxes[:, 3] - boxes[:, 1]) >= min_size)
  usable = size_ok & jnp.all(jnp.isfinite(boxes), -1) & jnp.isfinite(logits)
  scores = jnp.where(usable, logits, -jnp.inf)
  top_scores, top = jax.lax.top_k(scores, min(pre_nms, scores.shape[0]))
  keep, _ = box_ops.nms(boxes[top], top_scores, nms_iou, post_nms)
  valid = keep >= 0
  chosen = top[jnp.where(valid, keep, 0)]
  return (jnp.where(valid[:, None], boxes[chosen], 0.0),
          jnp.where(valid, logits[chosen], -jnp.inf), valid)


@dataclasses.dataclass(frozen=True)
class RoISettings:
  """Stage two's training sample (Fast R-CNN's minibatch) and box parametrisation."""
  batch_per_image: int = 32
  positive_fraction: float = 0.25
  fg_iou: float = 0.5  # foreground: IoU >= this with an object
  bg_iou_low: float = 0.0  # background: IoU in [bg_iou_low, fg_iou)
  box_weights: tuple = (10.0, 10.0, 5.0, 5.0)
  add_ground_truth: bool = True  # objects join the candidates (always some foreground)


def sample_rois(proposals, valid, gt_boxes, gt_classes, key, settings: RoISettings):
  """Stage two's training RoIs of one image.

  Candidates are the valid proposals (and the objects themselves); foreground has IoU
  >= `fg_iou` with an object and takes its class, background IoU in
  `[bg_iou_low, fg_iou)`. A balanced random sample, foreground first, fills
  `batch_per_image` rows; rows left over are padding.
  Returns `(rois [R, 4]`, labels `[R]` int32: 0 background, c + 1 for class c, -1
  padding, `deltas [R, 4]` towards the matched object, weighted by `box_weights`).
  """
  gt_valid = objects(gt_boxes, gt_classes)
  if settings.add_ground_truth:
    candidates = jnp.concatenate([proposals, gt_boxes])
    usable = jnp.concatenate([valid, gt_valid])
  else:
    candidates, usable = proposals, valid
  short = settings.batch_per_image - candidates.shape[0]
  if short > 0:  # fewer candidates than rows: pad with unusable ones
    candidates = jnp.concatenate([candidates, jnp.zeros((short, 4), candidates.dtype)])
    usable = jnp.concatenate([usable, jnp.zeros((short,), bool)])
  best_iou, index = match(candidates, gt_boxes, gt_valid)
  best_iou = jnp.maximum(best_iou, 0.0)  # no objects (-1): every candidate background
  fg = usable & (best_iou >= settings.fg_iou)
  bg = usable & (best_iou < settings.fg_iou) & (best_iou >= settings.bg_iou_low)
  pos, neg = sample_balanced(fg, bg, settings.batch_per_image, settings.positive_fraction,
                             key)
  rank = jnp.where(pos, 0, jnp.where(neg, 1, 2))  # foreground, background, unused
  rows = jnp.argsort(rank, stable=True)[:settings.batch_per_image]
  rois = candidates[rows]
  labels = jnp.where(pos[rows], gt_classes[index[rows]] + 1,
                     jnp.where(neg[rows], 0, -1)).astype(jnp.int32)
  fg = (labels > 0)[:, None]
  unit = jnp.array([0.0, 0.0, 1.0, 1.0])  # finite logs where there is no target
  deltas = encode_deltas(jnp.where(fg, gt_boxes[index[rows]], unit),
                         jnp.where(fg, rois, unit), settings.box_weights)
  return rois, labels, deltas


def smooth_l1(x, beta: float):
  """Elementwise: 0.5 x^2 / beta for |x| < beta, else |x| - 0.5 beta (beta=0: |x|)."""
  ax = jnp.abs(x)
  if beta == 0:
    return ax
  return jnp.where(ax < beta, 0.5 * x * x / beta, ax - 0.5 * beta)


@dataclasses.dataclass(frozen=True)
class LossWeights:
  """The four terms of the Faster R-CNN loss (config values)."""
  rpn_objectness: float = 1.0
  rpn_box: float = 1.0
  classifier: float = 1.0
  box: float = 1.0
  beta: float = 1.0 / 9  # smooth L1's quadratic zone, for both box terms (torchvision)


def faster_rcnn_loss(outputs: dict, weights: LossWeights = LossWeights()):
  """The combined loss of a training batch -> (scalar, {term: scalar}).

  `outputs` (from the model given targets): `rpn_logits [N, A]`, `rpn_deltas [N, A, 4]`,
  `rpn_labels [N, A]`, `rpn_targets [N, A, 4]`, `class_logits [N, R, K + 1]`,
  `box_deltas [N, R, K, 4]`, `roi_labels [N, R]`, `roi_targets [N, R, 4]`.
  RPN: binary cross-entropy averaged over the sampled anchors plus smooth L1 on the
  positives' deltas summed and divided by the number sampled. Stage two: softmax
  cross-entropy averaged over the sampled RoIs plus smooth L1 on the foreground RoIs'
  deltas of their own class, summed and divided by the number sampled.
  """
  labels = outputs["rpn_labels"]
  sampled = (labels >= 0).astype(jnp.float32)
  n_rpn = jnp.maximum(jnp.sum(sampled), 1.0)
  logits = outputs["rpn_logits"]
  bce = jnp.where(labels == 1, jax.nn.softplus(-logits), jax.nn.softplus(logits))
  rpn_objectness = jnp.sum(bce * sampled) / n_rpn
  rpn_box = jnp.sum((labels == 1)[..., None] * smooth_l1(
      outputs["rpn_deltas"] - outputs["rpn_targets"], weights.beta)) / n_rpn

  roi_labels = outputs["roi_labels"]
  used = (roi_labels >= 0).astype(jnp.float32)
  n_roi = jnp.maximum(jnp.sum(used), 1.0)
  log_probs = jax.nn.log_softmax(outputs["class_logits"])
  xent = -jnp.take_along_axis(log_probs, jnp.maximum(roi_labels, 0)[..., None], -1)[..., 0]
  classifier = jnp.sum(xent * used) / n_roi
  fg = roi_labels > 0
  own = jnp.take_along_axis(outputs["box_deltas"],
                            jnp.maximum(roi_labels - 1, 0)[..., None, None], -2)[..., 0, :]
  box = jnp.sum(fg[..., None] * smooth_l1(own - outputs["roi_targets"], weights.beta)) / n_roi
  terms = {"rpn_objectness": rpn_objectness, "rpn_box": rpn_box, "classifier": classifier,
           "box": box}
  total = sum(getattr(weights, k) * v for k, v in terms.items())
  return total, {**terms, "roi_accuracy": jnp.sum(
      (jnp.argmax(outputs["class_logits"], -1) == roi_labels) * used) / n_roi,
      "foreground_rois": jnp.sum(fg) / roi_labels.shape[0]}


@dataclasses.dataclass(frozen=True)
class PostProcess:
  """Stage two's outputs -> detections with per-class NMS (fixed size, jit/vmap-able)."""
  score_threshold: float = 0.05
  iou_threshold: float = 0.5
  max_detections: int = 50
  box_weights: tuple = (10.0, 10.0, 5.0, 5.0)

  def __call__(self, proposals, valid, class_logits, box_deltas) -> dict:
    """One image: proposals `[P, 4]`, valid `[P]`, logits `[P, K + 1]`, deltas
    `[P, K, 4]` -> {"boxes" `[D, 4]`, "scores" `[D]`, "classes" `[D]` (-1 and 0 on
    padding), "count"}, D = max_detections, as `yolo.PostProcess` returns.

    Every (proposal, class) pair is a candidate with its class probability and its
    class's refined box (clipped to the image); NMS runs within each class.
    """
    k = box_deltas.shape[-2]
    probs = jax.nn.softmax(class_logits)[:, 1:]
    boxes = jnp.clip(decode_deltas(box_deltas, proposals[:, None, :], self.box_weights),
                     0.0, 1.0)
    nonempty = (boxes[..., 2] > boxes[..., 0]) & (boxes[..., 3] > boxes[..., 1])
    scores = jnp.where(valid[:, None] & nonempty, probs, -jnp.inf).reshape(-1)
    boxes = boxes.reshape(-1, 4)
    classes = jnp.tile(jnp.arange(k), proposals.shape[0])
    index, count = box_ops.nms(boxes, scores, self.iou_threshold, self.max_detections,
                               self.score_threshold, classes=classes)
    return box_ops.kept(index, count, boxes, scores, classes)
