"""Detection metrics: VOC-style AP at IoU 0.5 and COCO-style mAP@[.5:.95].

Inputs are per image, in the same order for detections and ground truth:
  detections[i]  = {"boxes": [n, 4] corner boxes, "scores": [n], "classes": [n] int}
  ground_truth[i] = {"boxes": [m, 4], "classes": [m] int}
IoU has no "+1" pixel convention (boxes are continuous, often normalised).

VOC (Everingham et al. 2010, the 2010+ devkit): a detection, by descending score
over the whole set, is a true positive when its best-overlapping ground-truth box of
its class has IoU > 0.5 and was not taken by a higher-scoring detection; AP is the
area under the precision envelope at every recall point ("all-point").
COCO (as pycocotools computes it, and tested against it): per image and class the
100 best detections are matched greedily to the unmatched ground-truth box of
highest IoU >= t; precision is read at 101 recall points; mAP averages over
t in 0.50:0.05:0.95 and over classes that have ground truth.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from cnn_lab.errors import fail

COCO_THRESHOLDS = np.linspace(0.5, 0.95, 10)
COCO_RECALLS = np.linspace(0.0, 1.0, 101)


def pairwise_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """numpy twin of `ops.boxes.iou` for host-side evaluation: `[N, 4] x [M, 4] -> [N, M]`."""
  lo = np.maximum(a[:, None, :2], b[None, :, :2])
  hi = np.minimum(a[:, None, 2:], b[None, :, 2:])
  inter = np.prod(np.clip(hi - lo, 0, None), -1)
  area = lambda x: np.prod(np.clip(x[:, 2:] - x[:, :2], 0, None), -1)
  union = area(a)[:, None] + area(b)[None, :] - inter
  return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def _as_arrays(item: dict, name: str, index: int, with_scores: bool) -> tuple:
  boxes = np.asarray(item["boxes"], np.float64).reshape(-1, 4) if np.size(item["boxes"]) \
      else np.zeros((0, 4))
  classes = np.asarray(item["classes"], np.int64).reshape(-1)
  scores = np.asarray(item["scores"], np.float64).reshape(-1) if with_scores else None
  n = len(boxes)
  if len(classes) != n or (with_scores and len(scores) != n):
    raise fail(f"{name}[{index}]", "boxes, classes (and scores) of one length",
               f"{n} boxes, {len(classes)} classes" +
               (f", {len(scores)} scores" if with_scores else ""))
  if not np.all(np.isfinite(boxes)) or (with_scores and not np.all(np.isfinite(scores))):
    raise fail(f"{name}[{index}]", "finite boxes and scores", "NaN or inf")
  return boxes, classes, scores


def _match_image(boxes, scores, gt_boxes, thresholds, rule: str, max_dets: int | None):
  """One image, one class -> (kept scores [D], true-positive flags [T, D])."""
  order = np.argsort(-scores, kind="mergesort")[:max_dets]
  boxes, scores = boxes[order], scores[order]
  tp = np.zeros((len(thresholds), len(boxes)), bool)
  if not len(boxes) or not len(gt_boxes):
    return scores, tp
  ious = pairwise_iou(boxes, gt_boxes)
  for t, threshold in enumerate(thresholds):
    taken = np.zeros(len(gt_boxes), bool)
    for d in range(len(boxes)):
      if rule == "voc":  # the best box overall; a second hit on it is a false positive
        g = int(np.argmax(ious[d]))
        if ious[d, g] > threshold and not taken[g]:
          tp[t, d] = taken[g] = True
      else:  # coco: the best still-unmatched box with IoU >= t (pycocotools' loop)
        candidates = np.where(~taken & (ious[d] >= min(threshold, 1 - 1e-10)))[0]
        if len(candidates):
          ranked = ious[d, candidates][::-1]  # reversed: ties go to the later box
          best = candidates[len(candidates) - 1 - np.argmax(ranked)]
          tp[t, d] = taken[best] = True
  return scores, tp


def _precision_recall(scores: np.ndarray, tp: np.ndarray, num_gt: int):
  order = np.argsort(-scores, kind="mergesort")
  tp = tp[order]
  tps, fps = np.cumsum(tp), np.cumsum(~tp)
  recall = tps / num_gt
  precision = tps / np.maximum(tps + fps, np.finfo(np.float64).eps)
  return precision, recall


def _all_point_ap(precision, recall) -> float:
  recall = np.concatenate([[0.0], recall, [1.0]])
  envelope = np.maximum.accumulate(np.concatenate([[0.0], precision, [0.0]])[::-1])[::-1]
  steps = np.where(recall[1:] != recall[:-1])[0]
  return float(np.sum((recall[steps + 1] - recall[steps]) * envelope[steps + 1]))


def _sampled_ap(precision, recall) -> float:
  envelope = np.append(np.maximum.accumulate(precision[::-1])[::-1], 0.0)
  where = np.searchsorted(recall, COCO_RECALLS, side="left")  # past the end reads 0
  return float(np.mean(envelope[where]))


def average_precisions(detections: Sequence[dict], ground_truth: Sequence[dict],
                       num_classes: int, *, thresholds=(0.5,), rule: str = "voc",
                       max_dets: int | None = None) -> np.ndarray:
  """-> AP `[len(thresholds), num_classes]`, NaN for classes without ground truth.

  `rule="voc"`: all-point AP with VOC matching; `rule="coco"`: 101-point AP with
  COCO matching (pass `max_dets=100` for pycocotools' default).
  """
  if rule not in ("voc", "coco"):
    raise fail("rule", "'voc' or 'coco'", rule)
  if len(detections) != len(ground_truth):
    raise fail("detections", f"one entry per image ({len(ground_truth)} ground-truth images)",
               len(detections))
  thresholds = np.asarray(thresholds, np.float64)
  scores = [[[] for _ in range(num_classes)] for _ in thresholds]
  hits = [[[] for _ in range(num_classes)] for _ in thresholds]
  num_gt = np.zeros(num_classes, int)
  for i, (det, gt) in enumerate(zip(detections, ground_truth)):
    boxes, classes, det_scores = _as_arrays(det, "detections", i, True)
    gt_boxes, gt_classes, _ = _as_arrays(gt, "ground_truth", i, False)
    for name, c in (("detections", classes), ("ground_truth", gt_classes)):
      if len(c) and (c.min() < 0 or c.max() >= num_classes):
        raise fail(f"{name}[{i}].classes", f"ids in [0, {num_classes})", c.tolist())
    num_gt += np.bincount(gt_classes, minlength=num_classes)
    for c in np.union1d(classes, gt_classes):
      kept, tp = _match_image(boxes[classes == c], det_scores[classes == c],
                              gt_boxes[gt_classes == c], thresholds, rule, max_dets)
      for t in range(len(thresholds)):
        scores[t][c].append(kept)
        hits[t][c].append(tp[t])
  ap = np.full((len(thresholds), num_classes), np.nan)
  integrate = _all_point_ap if rule == "voc" else _sampled_ap
  for t in range(len(thresholds)):
    for c in range(num_classes):
      if num_gt[c] == 0:
        continue
      s = np.concatenate(scores[t][c]) if scores[t][c] else np.zeros(0)
      h = np.concatenate(hits[t][c]) if hits[t][c] else np.zeros(0, bool)
      ap[t, c] = integrate(*_precision_recall(s, h, num_gt[c]))
  return ap


def evaluate_detections(detections: Sequence[dict], ground_truth: Sequence[dict],
                        num_classes: int) -> Iterator[tuple[str, float]]:
  """Yields `(name, value)`: `voc_mAP50` (VOC mAP@0.5), `coco_mAP` (mAP@[.5:.95]),
  `coco_AP50` and `coco_AP75`."""
  voc = average_precisions(detections, ground_truth, num_classes, rule="voc")
  coco = average_precisions(detections, ground_truth, num_classes,
                            thresholds=COCO_THRESHOLDS, rule="coco", max_dets=100)
  yield "voc_mAP50", float(np.nanmean(voc)) if np.isfinite(voc).any() else 0.0
  yield "coco_mAP", float(np.nanmean(coco)) if np.isfinite(coco).any() else 0.0
  yield "coco_AP50", float(np.nanmean(coco[0])) if np.isfinite(coco[0]).any() else 0.0
  yield "coco_AP75", float(np.nanmean(coco[5])) if np.isfinite(coco[5]).any() else 0.0
