"""Class maps as colour images, and image | ground truth | prediction panels."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from cnn_lab.viz.detections import PALETTE, to_uint8

BACKGROUND_COLOUR = (0, 0, 0)


def colorize(labels, palette=None) -> np.ndarray:
  """int `[H, W]` class ids -> uint8 `[H, W, 3]`; class 0 black, then the fixed palette."""
  colours = np.array(palette or (BACKGROUND_COLOUR, *PALETTE), np.uint8)
  return colours[np.asarray(labels) % len(colours)]


def segmentation_panel(image, truth, prediction, *, alpha: float = 0.85,
                       min_side: int = 192) -> Image.Image:
  """Side by side: the image, then the ground truth and the prediction in the palette,
  `alpha` of the class colour over the image (so edges stay visible).

  image `[H, W, C]` (uint8 or floats in [0, 1]); truth, prediction int `[H, W]`
  (truth may be None). Enlarged (nearest) to at least `min_side` pixels per panel.
  """
  base = to_uint8(image).astype(np.float32)
  panels = [base] + [(1 - alpha) * base + alpha * colorize(m) for m in (truth, prediction)
                     if m is not None]
  scale = max(1, int(np.ceil(min_side / max(base.shape[:2]))))
  tiles = [Image.fromarray(p.round().astype(np.uint8)).resize(
      (base.shape[1] * scale, base.shape[0] * scale), Image.NEAREST) for p in panels]
  w, h = tiles[0].size
  out = Image.new("RGB", (len(tiles) * (w + 4) - 4, h), (255, 255, 255))
  for i, tile in enumerate(tiles):
    out.paste(tile, (i * (w + 4), 0))
  return out


def legend(class_names, palette=None) -> Image.Image:
  """A strip naming each class in its colour."""
  colours = colorize(np.arange(len(class_names)), palette)
  out = Image.new("RGB", (120 * len(class_names), 16), (255, 255, 255))
  draw = ImageDraw.Draw(out)
  for i, name in enumerate(class_names):
    draw.rectangle([i * 120, 2, i * 120 + 12, 14], fill=tuple(int(v) for v in colours[i]))
    draw.text((i * 120 + 16, 2), str(name), fill=(0, 0, 0))
  return out
