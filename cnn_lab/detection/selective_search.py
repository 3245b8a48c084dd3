"""Selective search (Uijlings et al. 2013), the class-agnostic proposals of R-CNN.

An over-segmentation (Felzenszwalb and Huttenlocher's graph-based segmentation,
`skimage.segmentation.felzenszwalb`) is merged bottom-up: again and again the two
most similar neighbouring regions become one, until one region is left. The bounding
box of every region ever formed is a proposal, so proposals cover objects at every
scale without a sliding window. Similarity is the sum of the paper's colour
(histogram intersection), size (small regions merge first) and fill (regions whose
bounding boxes fit together) terms; its texture term and its diversification over
colour spaces are left out, a strategy being one `scale` of the segmentation.

Host-side numpy: the input of the R-CNN teaching path (`experiments/rcnn.py`), not
something to jit.
"""

from __future__ import annotations

import heapq

import numpy as np

from cnn_lab.errors import fail

BINS = 25  # colour histogram bins per channel, as in the paper


def _initial_regions(labels: np.ndarray, image: np.ndarray) -> dict:
  regions = {}
  for r in np.unique(labels):
    rows, cols = np.nonzero(labels == r)
    pixels = image[rows, cols]
    hist = np.concatenate([np.histogram(pixels[:, c], BINS, (0.0, 1.0))[0]
                           for c in range(image.shape[-1])]).astype(np.float64)
    regions[int(r)] = {"box": (cols.min(), rows.min(), cols.max() + 1, rows.max() + 1),
                       "size": len(rows), "hist": hist / hist.sum()}
  return regions


def _neighbours(labels: np.ndarray) -> set:
  pairs = set()
  for a, b in ((labels[:, :-1], labels[:, 1:]), (labels[:-1], labels[1:])):
    differ = a != b
    for p, q in zip(a[differ], b[differ]):
      pairs.add((min(p, q), max(p, q)))
  return {(int(p), int(q)) for p, q in pairs}


def _union(a: tuple, b: tuple) -> tuple:
  return (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))


def _similarity(a: dict, b: dict, image_size: int) -> float:
  colour = np.minimum(a["hist"], b["hist"]).sum() / a["hist"].shape[0] * BINS
  size = 1.0 - (a["size"] + b["size"]) / image_size
  x1, y1, x2, y2 = _union(a["box"], b["box"])
  fill = 1.0 - ((x2 - x1) * (y2 - y1) - a["size"] - b["size"]) / image_size
  return colour + size + fill


def _hierarchy(image: np.ndarray, scale: float, sigma: float, min_size: int) -> list:
  from skimage.segmentation import felzenszwalb
  labels = felzenszwalb(image, scale=scale, sigma=sigma, min_size=min_size)
  regions = _initial_regions(labels, image)
  boxes = [r["box"] for r in regions.values()]
  size = labels.size
  heap = [(-_similarity(regions[p], regions[q], size), p, q) for p, q in _neighbours(labels)]
  heapq.heapify(heap)
  adjacent = {r: set() for r in regions}
  for _, p, q in heap:
    adjacent[p].add(q)
    adjacent[q].add(p)
  next_id = max(regions) + 1
  while heap:
    _, p, q = heapq.heappop(heap)
    if p not in regions or q not in regions:
      continue  # one of them was merged already
    a, b = regions.pop(p), regions.pop(q)
    merged = {"box": _union(a["box"], b["box"]), "size": a["size"] + b["size"],
              "hist": (a["hist"] * a["size"] + b["hist"] * b["size"]) / (a["size"] + b["size"])}
    around = (adjacent.pop(p) | adjacent.pop(q)) - {p, q}
    regions[next_id], adjacent[next_id] = merged, around
    for r in around:
      adjacent[r] -= {p, q}
      adjacent[r].add(next_id)
      heapq.heappush(heap, (-_similarity(merged, regions[r], size), r, next_id))
    boxes.append(merged["box"])
    next_id += 1
  return boxes


def selective_search(image, *, scales=(50.0, 150.0), sigma: float = 0.8,
                     min_size: int = 10, min_box: float = 0.05) -> np.ndarray:
  """Class-agnostic proposals of one image.

  Args:
    image: `[H, W, 3]` uint8 or float in [0, 1].
    scales: Felzenszwalb's `scale` per strategy (larger: bigger initial regions).
    sigma, min_size: the segmentation's smoothing and smallest region (pixels).
    min_box: proposals narrower or lower than this fraction of the image are dropped.
  Returns normalised xyxy boxes `[R, 4]` float32, duplicates removed, in the order they
  were formed (small initial regions first, the whole-image region last per scale).
  """
  image = np.asarray(image)
  if image.ndim != 3 or image.shape[-1] != 3:
    raise fail("image", "an RGB image [H, W, 3]", f"shape {image.shape}")
  image = image / 255.0 if image.dtype == np.uint8 else image.astype(np.float64)
  h, w = image.shape[:2]
  seen, boxes = set(), []
  for scale in scales:
    for box in _hierarchy(image, scale, sigma, min_size):
      if box not in seen and box[2] - box[0] >= min_box * w and box[3] - box[1] >= min_box * h:
        seen.add(box)
        boxes.append(box)
  return (np.asarray(boxes, np.float32).reshape(-1, 4) /
          np.array([w, h, w, h], np.float32))
