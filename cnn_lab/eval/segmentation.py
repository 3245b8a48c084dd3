"""Segmentation metrics from one confusion matrix accumulated over the whole split
(not per-batch averages): pixel accuracy, per-class IoU, mean IoU."""

from __future__ import annotations

from collections.abc import Iterator

import jax.numpy as jnp
import numpy as np


def confusion_matrix(predictions, labels, num_classes: int, mask=None):
  """`[K, K]` pixel counts (rows: true class, columns: predicted), jit-able.

  predictions, labels: int `[N, H, W]`; mask: optional bool `[N]` (padded examples).
  """
  weight = jnp.ones(labels.shape, jnp.float32)
  if mask is not None:
    weight = weight * mask.reshape(mask.shape + (1,) * (labels.ndim - mask.ndim))
  index = labels.reshape(-1) * num_classes + predictions.reshape(-1)
  counts = jnp.zeros(num_classes * num_classes, jnp.float32).at[index].add(weight.reshape(-1))
  return counts.reshape(num_classes, num_classes)


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
