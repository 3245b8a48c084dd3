"""`shapes`: procedural scenes of coloured shapes over textured backgrounds, for every task.

Each example carries annotations for all later tasks:
  image     uint8 [S, S, 3]
  label     the image-level class (that of the largest object), for classification
  mask      uint8 [S, S]: 0 background, 1 + class id under each object (per-pixel class)
  objects   a sequence of {label, bbox [ymin, xmin, ymax, xmax] in [0, 1],
            landmarks [5, 2] (y, x) in [0, 1]: the centre, then the top-, right-,
            bottom- and left-most points of the outline (vertices for polygons)}

Classes: circle, square, triangle, star, hexagon, cross, diamond, pentagon.
Every example is drawn from `numpy.random.default_rng((seed, split, index))`, so a
config prepares identically anywhere, offline, in seconds.
Configs: `single_{32,64,128,224}` (one object), `multi_{64,128,224}` (1-4 objects) and
`localize_64` (one object in 80% of the scenes, none in 20%; `label` is 0 when empty,
so it is for localization, not classification).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image, ImageDraw

from cnn_lab.data.features import pixels
from cnn_lab.errors import fail

CLASSES = ("circle", "square", "triangle", "star", "hexagon", "cross", "diamond", "pentagon")
NUM_LANDMARKS = 5
SPLIT_SEEDS = {"train": 0, "test": 1}


@dataclasses.dataclass
class ShapesConfig(tfds.core.BuilderConfig):
  size: int = 32
  max_objects: int = 1
  train_examples: int = 6000
  test_examples: int = 1000
  seed: int = 0
  empty_fraction: float = 0.0  # scenes without any object (localization's pc = 0)


def _outline(kind: str, cy: float, cx: float, r: float, angle: float) -> np.ndarray:
  """Polygon vertices `[V, 2]` (y, x) of a shape of radius r; circles get 64 points."""
  def ring(n, radius=1.0, offset=0.0):
    t = angle + offset + 2 * np.pi * np.arange(n) / n
    return np.stack([cy - r * radius * np.cos(t), cx + r * radius * np.sin(t)], -1)
  if kind == "circle":
    return ring(64)
  if kind == "square":
    return ring(4, offset=np.pi / 4)
  if kind == "triangle":
    return ring(3)
  if kind == "hexagon":
    return ring(6)
  if kind == "pentagon":
    return ring(5)
  if kind == "diamond":
    pts = ring(4)
    return np.stack([cy + (pts[:, 0] - cy) * 1.0, cx + (pts[:, 1] - cx) * 0.6], -1)
  if kind == "star":
    outer, inner = ring(5), ring(5, 0.45, np.pi / 5)
    return np.stack([outer, inner], 1).reshape(-1, 2)
  if kind == "cross":
    w = 0.35
    base = np.array([(-1, -w), (-1, w), (-w, w), (-w, 1), (w, 1), (w, w), (1, w), (1, -w),
                     (w, -w), (w, -1), (-w, -1), (-w, -w)])
    c, s = np.cos(angle), np.sin(angle)
    y = base[:, 0] * c - base[:, 1] * s
    x = base[:, 0] * s + base[:, 1] * c
    return np.stack([cy + r * y, cx + r * x], -1)
  raise fail("kind", f"one of {CLASSES}", kind)


def _landmarks(outline: np.ndarray, cy: float, cx: float) -> np.ndarray:
  """Centre, then the top-, right-, bottom- and left-most outline points: `[5, 2]` (y, x)."""
  ys, xs = outline[:, 0], outline[:, 1]
  return np.array([(cy, cx), outline[np.argmin(ys)], outline[np.argmax(xs)],
                   outline[np.argmax(ys)], outline[np.argmin(xs)]])


def background(rng: np.random.Generator, size: int) -> np.ndarray:
  """A muted texture: a colour gradient, plus stripes or a checkerboard, plus noise."""
  yy, xx = np.mgrid[0:size, 0:size] / size
  c0, c1 = rng.uniform(40, 140, 3), rng.uniform(40, 140, 3)
  t = (np.cos(rng.uniform(0, np.pi)) * yy + np.sin(rng.uniform(0, np.pi)) * xx)[..., None]
  img = c0 * (1 - t) + c1 * t
  period = rng.uniform(0.08, 0.3)
  pattern = rng.integers(3)
  if pattern == 0:
    img += 18 * np.sign(np.sin(2 * np.pi * (yy + xx) / period))[..., None]
  elif pattern == 1:
    img += 18 * (((yy // period) + (xx // period)) % 2 * 2 - 1)[..., None]
  img += rng.normal(0, 8, img.shape)
  return np.clip(img, 0, 255)


def render(rng: np.random.Generator, size: int, max_objects: int,
           empty_fraction: float = 0.0) -> dict:
  """One scene and its annotations (see the module docstring)."""
  image = Image.fromarray(background(rng, size).astype(np.uint8))
  mask = Image.new("L", (size, size), 0)
  draw, draw_mask = ImageDraw.Draw(image), ImageDraw.Draw(mask)
  count = 1 if max_objects == 1 else int(rng.integers(1, max_objects + 1))
  if empty_fraction and rng.uniform() < empty_fraction:  # drawn only when used: the
    count = 0                                            # other configs stay as they were
  objects, placed = [], []
  for _ in range(count):
    for _attempt in range(20):  # keep centres apart so objects stay recognisable
      r = rng.uniform(0.18, 0.38) * size if max_objects == 1 else \
          rng.uniform(0.1, 0.22) * size
      cy, cx = rng.uniform(r, size - r, 2)
      if all(np.hypot(cy - py, cx - px) > 0.8 * (r + pr) for py, px, pr in placed):
        break
    placed.append((cy, cx, r))
    label = int(rng.integers(len(CLASSES)))
    outline = _outline(CLASSES[label], cy, cx, r, rng.uniform(0, 2 * np.pi))
    colour = tuple(int(v) for v in rng.uniform(150, 255, 3) * rng.permutation([1, 1, 0.3]))
    poly = [(float(x), float(y)) for y, x in outline]
    draw.polygon(poly, fill=colour)
    draw_mask.polygon(poly, fill=label + 1)
    ymin, xmin = np.clip(outline.min(0), 0, size)
    ymax, xmax = np.clip(outline.max(0), 0, size)
    objects.append({"label": label,
                    "bbox": (np.array([ymin, xmin, ymax, xmax]) / size).astype(np.float32),
                    "landmarks": (np.clip(_landmarks(outline, cy, cx), 0, size) / size)
                    .astype(np.float32),
                    "area": (ymax - ymin) * (xmax - xmin)})
  main = max(objects, key=lambda o: o["area"])["label"] if objects else 0
  for o in objects:
    del o["area"]
  if not objects:  # TFDS needs the fields' shapes even for an empty sequence
    objects = {"label": np.zeros(0, np.int64), "bbox": np.zeros((0, 4), np.float32),
               "landmarks": np.zeros((0, NUM_LANDMARKS, 2), np.float32)}
  return {"image": np.asarray(image), "mask": np.asarray(mask)[..., None],
          "label": main, "objects": objects}


class Shapes(tfds.core.GeneratorBasedBuilder):
  """Procedural shapes for classification, localization, detection and segmentation."""

  VERSION = tfds.core.Version("1.1.0")
  RELEASE_NOTES = {"1.0.0": "Eight classes, textured backgrounds, boxes, landmarks, masks.",
                   "1.1.0": "Images and masks stored as raw bytes (same values)."}
  BUILDER_CONFIGS = [
      ShapesConfig(name=f"single_{s}", size=s, max_objects=1,
                   train_examples=6000 if s <= 64 else 3000,
                   test_examples=1000 if s <= 64 else 500) for s in (32, 64, 128, 224)
  ] + [
      ShapesConfig(name=f"multi_{s}", size=s, max_objects=4,
                   train_examples=4000 if s <= 64 else 2000, test_examples=500)
      for s in (64, 128, 224)
  ] + [
      ShapesConfig(name="localize_64", size=64, max_objects=1, empty_fraction=0.2)
  ]

  def _info(self) -> tfds.core.DatasetInfo:
    s = self.builder_config.size
    return tfds.core.DatasetInfo(
        builder=self,
        description=__doc__,
        features=tfds.features.FeaturesDict({
            "image": pixels((s, s, 3)),
            "mask": pixels((s, s, 1)),
            "label": tfds.features.ClassLabel(names=CLASSES),
            "objects": tfds.features.Sequence({
                "label": tfds.features.ClassLabel(names=CLASSES),
                "bbox": tfds.features.Tensor(shape=(4,), dtype=np.float32),
                "landmarks": tfds.features.Tensor(shape=(NUM_LANDMARKS, 2), dtype=np.float32),
            }),
        }),
        supervised_keys=("image", "label"),
    )

  def _split_generators(self, dl_manager):
    del dl_manager
    cfg = self.builder_config
    return {"train": self._generate_examples("train", cfg.train_examples),
            "test": self._generate_examples("test", cfg.test_examples)}

  def _generate_examples(self, split: str, count: int):
    cfg = self.builder_config
    for i in range(count):
      rng = np.random.default_rng((cfg.seed, SPLIT_SEEDS[split], i))
      yield i, render(rng, cfg.size, cfg.max_objects, cfg.empty_fraction)
