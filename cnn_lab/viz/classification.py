"""Figures of a classifier's mistakes: the misclassified images and the confusion matrix."""

from __future__ import annotations

import numpy as np

from cnn_lab.viz.curves import pyplot, save_figure


def plot_misclassified(images, truth, predicted, confidence, path: str, *,
                       columns: int = 10, title: str = "") -> str:
  """A grid of images `[M, H, W, C]` (any range; shown per-image min-max scaled), each
  titled `truth -> predicted (confidence)`, in the order given."""
  images = np.asarray(images, np.float32)
  rows = max(1, -(-len(images) // columns))
  fig, axes = pyplot().subplots(rows, columns, figsize=(1.25 * columns, 1.45 * rows + 0.4),
                                squeeze=False)
  for ax in axes.flat:
    ax.axis("off")
  for ax, image, t, p, c in zip(axes.flat, images, truth, predicted, confidence):
    shown = image[..., 0] if image.shape[-1] == 1 else image
    lo, hi = float(shown.min()), float(shown.max())
    ax.imshow((shown - lo) / max(hi - lo, 1e-6), cmap="gray" if shown.ndim == 2 else None,
              vmin=0, vmax=1)
    ax.set_title(f"{int(t)}\u2192{int(p)} ({float(c):.2f})", fontsize=8, color="darkred")
  if title:
    fig.suptitle(title, fontsize=9)
  fig.tight_layout()
  return save_figure(fig, path)


def plot_confusion(matrix, path: str, *, names=None, title: str = "") -> str:
  """The `[K, K]` counts (rows: truth, columns: prediction), every non-zero count written
  in its cell; only the errors are coloured (the diagonal stays pale, its counts grey),
  so a few errors among thousands of correct answers stand out."""
  matrix = np.asarray(matrix, np.int64)
  k = len(matrix)
  names = list(names or range(k))
  errors = matrix.copy()
  np.fill_diagonal(errors, 0)
  fig, ax = pyplot().subplots(figsize=(0.5 * k + 2.2, 0.5 * k + 1.6))
  ax.imshow(errors, cmap="Reds")
  dark = 0.6 * max(int(errors.max()), 1)
  for i in range(k):
    for j in range(k):
      if matrix[i, j]:
        colour = "grey" if i == j else "white" if errors[i, j] > dark else "black"
        ax.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=7, color=colour)
  ax.set_xticks(range(k), names)
  ax.set_yticks(range(k), names)
  ax.set_xlabel("predicted")
  ax.set_ylabel("true")
  if title:
    ax.set_title(title, fontsize=9)
  fig.tight_layout()
  return save_figure(fig, path)
