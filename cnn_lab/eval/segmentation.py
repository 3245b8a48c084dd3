"""Segmentation metrics from one confusion matrix accumulated over the whole split
(not per-batch averages): pixel accuracy, per-class IoU, mean IoU. The matrix is
`eval.classification.confusion_matrix` of the pixels, exact integer counts at any size."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np


def per_class_iou(confusion: np.ndarray) -> np.ndarray:
  """IoU of each class, TP / (TP + FP + FN); NaN for a class absent from both."""
  confusion = np.asarray(confusion, np.float64)
  tp = np.diag(confusion)
  union = confusion.sum(0) + confusion.sum(1) - tp
  return np.where(union > 0, tp / np.where(union > 0, union, 1), np.nan)


def segmentation_metrics(confusion, class_names=()) -> Iterator[tuple[str, float]]:
  """Yields `pixel_accuracy`, `mean_iou` (over classes present) and `iou/<class>`."""
  confusion = np.asarray(confusion, np.float64)
  yield "pixel_accuracy", float(np.trace(confusion) / max(confusion.sum(), 1.0))
  iou = per_class_iou(confusion)
  yield "mean_iou", float(np.nanmean(iou)) if np.isfinite(iou).any() else 0.0
  for k, value in enumerate(iou):
    name = class_names[k] if k < len(class_names) else str(k)
    if np.isfinite(value):
      yield f"iou/{name}", float(value)
