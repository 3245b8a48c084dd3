"""Object localization and landmark detection, as the course defines them.

The network's output for an image, `[5 + K + 2L]` raw values:
  pc          logit that an object is present (logistic loss)
  bx, by      the box centre, fractions of the image width and height (squared error)
  bh, bw      the box height and width, fractions of the image (squared error)
  c1..cK      class logits (softmax cross-entropy)
  x1, y1, ... L landmark points, fractions of the image (squared error)
Box, class and landmark terms count only for images holding an object.
Landmark error: the normalised mean error (NME), the mean point-to-point distance
divided by the ground-truth box size sqrt(w h).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from cnn_lab.losses import softmax_cross_entropy_per_example
from cnn_lab.ops import boxes as box_ops


class Targets(NamedTuple):
  boxes: jax.Array      # [N, 4] normalised xyxy
  classes: jax.Array    # [N] int, -1 when the image holds no object
  landmarks: jax.Array | None = None  # [N, L, 2] normalised (x, y)


class Prediction(NamedTuple):
  presence_logit: jax.Array  # [N]
  boxes: jax.Array           # [N, 4] normalised xyxy
  class_logits: jax.Array    # [N, K]
  landmarks: jax.Array | None  # [N, L, 2]


def course_box(boxes_xyxy):
  """xyxy -> the course's (bx, by, bh, bw)."""
  cx, cy, w, h = jnp.moveaxis(box_ops.convert(boxes_xyxy, "xyxy", "cxcywh"), -1, 0)
  return jnp.stack([cx, cy, h, w], -1)


def split_outputs(outputs, num_classes: int, num_landmarks: int) -> Prediction:
  """`[N, 5 + K + 2L]` -> named parts, boxes decoded to xyxy."""
  bx, by, bh, bw = jnp.moveaxis(outputs[:, 1:5], -1, 0)
  boxes = box_ops.convert(jnp.stack([bx, by, bw, bh], -1), "cxcywh", "xyxy")
  landmarks = outputs[:, 5 + num_classes:].reshape(-1, num_landmarks, 2) \
      if num_landmarks else None
  return Prediction(outputs[:, 0], boxes, outputs[:, 5:5 + num_classes], landmarks)


def localization_loss(outputs, targets: Targets, num_classes: int,
                      num_landmarks: int = 0) -> dict:
  """-> {"presence", "box", "classes"[, "landmarks"]}: batch means of each term."""
  present = (targets.classes >= 0).astype(jnp.float32)
  pc = outputs[:, 0]
  presence = jnp.mean(jax.nn.softplus(pc) - present * pc)  # logistic loss
  box = jnp.mean(present * jnp.sum((outputs[:, 1:5] - course_box(targets.boxes)) ** 2, -1))
  xent = softmax_cross_entropy_per_example(outputs[:, 5:5 + num_classes],
                                           jnp.maximum(targets.classes, 0))
  terms = {"presence": presence, "box": box, "classes": jnp.mean(present * xent)}
  if num_landmarks:
    points = outputs[:, 5 + num_classes:].reshape(-1, num_landmarks, 2)
    terms["landmarks"] = jnp.mean(present * jnp.sum((points - targets.landmarks) ** 2,
                                                    (-2, -1)))
  return terms


def landmark_nme(pred, truth, boxes):
  """Normalised mean error per image: `[N, L, 2]`, `[N, L, 2]`, `[N, 4]` -> `[N]`."""
  size = jnp.sqrt(jnp.maximum(box_ops.area(boxes), 1e-12))
  return jnp.mean(jnp.linalg.norm(pred - truth, axis=-1), -1) / size


def eval_sums(outputs, targets: Targets, mask, num_classes: int, num_landmarks: int) -> dict:
  """Per-batch sums over unmasked images: counts of correct presence, class, IoU > 0.5
  (and both), IoU and NME sums over images with an object."""
  p = split_outputs(outputs, num_classes, num_landmarks)
  counted = mask.astype(jnp.float32)
  present = (targets.classes >= 0).astype(jnp.float32) * counted
  iou = box_ops.elementwise_iou(p.boxes, targets.boxes)
  right_class = (jnp.argmax(p.class_logits, -1) == targets.classes)
  sums = {"count": jnp.sum(counted), "objects": jnp.sum(present),
          "presence_correct": jnp.sum(counted * ((p.presence_logit > 0) == (present > 0))),
          "class_correct": jnp.sum(present * right_class),
          "iou50": jnp.sum(present * (iou > 0.5)),
          "iou50_and_class": jnp.sum(present * (iou > 0.5) * right_class),
          "iou": jnp.sum(present * iou)}
  if num_landmarks:
    sums["nme"] = jnp.sum(present * landmark_nme(p.landmarks, targets.landmarks,
                                                 targets.boxes))
  return sums
