"""R-CNN (Girshick et al. 2014), the teaching path to two-stage detection.

Class-agnostic proposals (`selective_search`) are each cut out of the image, warped
to the classifier's fixed input and classified into K classes + background by an
ordinary ConvNet; per-class NMS over the scored proposals gives the detections.
Every proposal is a separate forward pass through the whole network, which is what
Fast R-CNN (one pass, then RoI pooling on the feature map) and Faster R-CNN (learned
proposals from the same features) remove: compare `experiments/rcnn.py` with
`experiments/compare_detectors.py`.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from cnn_lab.detection import rcnn
from cnn_lab.errors import fail
from cnn_lab.ops import boxes as box_ops
from cnn_lab.ops.roi import roi_align


def warp(image, boxes, size: int, *, context: float = 0.0):
  """Crops `boxes` (normalised xyxy `[R, 4]`) out of `image [H, W, C]`, each resized to
  `[size, size]` (anisotropically, R-CNN's "warp"): `[R, size, size, C]`.

  `context` enlarges every box by this fraction of its size on each side (R-CNN's 16
  pixels around a 195-pixel crop is ~0.08). Bilinear, 2x2 samples per output pixel
  (RoIAlign on the image); what falls outside the image is 0, the mean of a
  normalised image. Degenerate boxes give a constant crop.
  """
  if jnp.ndim(image) != 3:
    raise fail("image", "one image [H, W, C]", f"shape {jnp.shape(image)}")
  h, w = image.shape[:2]
  boxes = jnp.asarray(boxes, jnp.float32)
  pad = context * jnp.concatenate([boxes[:, 2:] - boxes[:, :2]] * 2, -1)
  boxes = (boxes + pad * jnp.array([-1.0, -1.0, 1.0, 1.0])) * jnp.array([w, h, w, h])
  return roi_align(image, boxes, size, spatial_scale=1.0, sampling_ratio=2)


def label_proposals(proposals, valid, gt_boxes, gt_classes, *, fg_iou: float = 0.5,
                    bg_iou: float = 0.3) -> np.ndarray:
  """Training labels of one image's (padded) proposals: class + 1 where IoU >= `fg_iou`
  with an object, 0 (background) below `bg_iou`, -1 in between and for padding.
  -> int32 `[R]`."""
  objects = rcnn.objects(jnp.asarray(gt_boxes), jnp.asarray(gt_classes))
  best, index = (np.asarray(a) for a in rcnn.match(jnp.asarray(proposals),
                                                   jnp.asarray(gt_boxes), objects))
  classes = np.asarray(gt_classes)[index]
  label = np.where(best >= fg_iou, classes + 1, np.where(best < bg_iou, 0, -1))
  return np.where(valid, label, -1).astype(np.int32)


def pad_proposals(proposals: np.ndarray, count: int):
  """Variable-length proposals `[R, 4]` -> fixed `[count, 4]` and valid `[count]` (the
  first `count` kept), so one jitted detector serves every image."""
  proposals = np.asarray(proposals, np.float32).reshape(-1, 4)[:count]
  out = np.zeros((count, 4), np.float32)
  out[:len(proposals)] = proposals
  return out, np.arange(count) < len(proposals)


def detect(classify, image, proposals, valid, *, size: int, context: float,
           postprocess: rcnn.PostProcess):
  """Warps and classifies every proposal of one image, then per-class NMS.

  `classify`: crops `[R, size, size, C]` -> logits `[R, K + 1]` (0: background).
  Returns `rcnn.PostProcess`'s fixed-size detections (the proposals' own boxes:
  no box regression here).
  """
  logits = classify(warp(image, proposals, size, context=context))
  k = logits.shape[-1] - 1
  return postprocess(proposals, valid, logits, jnp.zeros((proposals.shape[0], k, 4)))


def coverage(proposals, gt_boxes, gt_classes) -> np.ndarray:
  """Each object's best IoU with any proposal (a proposal method's recall at a
  threshold): padded proposals (zero boxes never overlap), objects `[M]` -> `[m]` for
  the m real objects."""
  found = np.asarray(rcnn.objects(jnp.asarray(gt_boxes), jnp.asarray(gt_classes)))
  return np.asarray(box_ops.iou(jnp.asarray(gt_boxes), jnp.asarray(proposals))).max(1)[found]
