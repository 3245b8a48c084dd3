"""Edge detection, drawn: the course's first convolution on a photograph."""

from __future__ import annotations

import numpy as np
from PIL import Image

from cnn_lab import ops
from cnn_lab.viz.detections import grid


def course_example() -> np.ndarray:
  """The lecture's 6x6 image (left half 10, right half 0) through the vertical detector:
  `[4, 4]`, 30 in the two middle columns."""
  image = np.concatenate([np.full((6, 3), 10.0), np.zeros((6, 3))], axis=1)
  return np.asarray(ops.detect_edges(image, "plain", "vertical"))


def _tile(response: np.ndarray, signed: bool) -> Image.Image:
  """A response map as a grey image: signed around mid-grey, or a magnitude from black."""
  scale = np.abs(response).max() or 1.0
  grey = 0.5 + 0.5 * response / scale if signed else response / scale
  return Image.fromarray((np.clip(grey, 0, 1) * 255).round().astype(np.uint8)).convert("RGB")


def edge_sheet(grey: np.ndarray) -> Image.Image:
  """`[H, W]` in [0, 1] -> one row per filter of `ops.FILTERS`: the photograph, its
  vertical and horizontal responses (mid-grey 0, white positive, black negative: the
  sign tells bright-to-dark from dark-to-bright) and the magnitude of both."""
  photo = _tile(grey[1:-1, 1:-1], signed=False)  # the size of a VALID response
  rows = []
  for name in ops.FILTERS:
    tiles = [photo] + [_tile(np.asarray(ops.detect_edges(grey, name, o)), o != "magnitude")
                       for o in ("vertical", "horizontal", "magnitude")]
    rows.append(grid(tiles, columns=4, titles=(name, "vertical", "horizontal", "magnitude")))
  return grid(rows, columns=1, pad=6)
