"""Boxes, labels and landmarks drawn on images, and image grids, as PIL images."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

PALETTE = ((230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
           (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212),
           (0, 128, 128), (220, 190, 255), (170, 110, 40), (255, 250, 200), (128, 0, 0),
           (170, 255, 195), (128, 128, 0), (255, 215, 180), (0, 0, 128), (128, 128, 128))


def to_uint8(image) -> np.ndarray:
  """`[H, W, C]` uint8 or floats in [0, 1] -> uint8 RGB."""
  image = np.asarray(image)
  if image.dtype != np.uint8:
    image = (np.clip(image, 0.0, 1.0) * 255).round().astype(np.uint8)
  return np.repeat(image, 3, -1) if image.shape[-1] == 1 else image


def draw_boxes(image, boxes, classes, scores=None, *, names=(), truth=None,
               min_side: int = 256) -> Image.Image:
  """Draws normalised xyxy `boxes [D, 4]` with class names (and scores) on `image`.

  The image is enlarged (nearest neighbour) to at least `min_side` pixels so that
  labels stay legible on small inputs. `truth`: optional `(boxes, classes)` drawn
  thin and white underneath.
  """
  img = Image.fromarray(to_uint8(image))
  scale = max(1, int(np.ceil(min_side / max(img.size))))
  img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
  draw = ImageDraw.Draw(img)
  w, h = img.size
  if truth is not None:
    for box in np.asarray(truth[0]).reshape(-1, 4):
      draw.rectangle([box[0] * w, box[1] * h, box[2] * w, box[3] * h], outline=(255,) * 3)
  for i, (box, c) in enumerate(zip(np.asarray(boxes).reshape(-1, 4), np.asarray(classes))):
    colour = PALETTE[int(c) % len(PALETTE)]
    x1, y1, x2, y2 = box[0] * w, box[1] * h, box[2] * w, box[3] * h
    draw.rectangle([x1, y1, x2, y2], outline=colour, width=2)
    label = names[int(c)] if int(c) < len(names) else str(int(c))
    if scores is not None:
      label += f" {float(scores[i]):.2f}"
    tw = draw.textlength(label)
    top = max(y1 - 11, 0)
    draw.rectangle([x1, top, x1 + tw + 4, top + 11], fill=colour)
    draw.text((x1 + 2, top), label, fill=(0, 0, 0))
  return img


def draw_points(img: Image.Image, points, colour=(255, 255, 0), radius: int = 3) -> Image.Image:
  """Marks normalised `(x, y)` points `[L, 2]` on a PIL image (in place); returns it."""
  draw = ImageDraw.Draw(img)
  w, h = img.size
  for x, y in np.asarray(points).reshape(-1, 2):
    draw.ellipse([x * w - radius, y * h - radius, x * w + radius, y * h + radius],
                 outline=colour, width=2)
  return img


def grid(images: list[Image.Image], columns: int = 4, pad: int = 4,
         titles: tuple = ()) -> Image.Image:
  """Tiles PIL images of one size into rows of `columns`, on white; `titles`: one
  caption per column, above it."""
  columns = max(1, min(columns, len(images)))
  rows = -(-len(images) // columns)
  w, h = images[0].size
  top = 16 if titles else 0
  out = Image.new("RGB", (columns * (w + pad) + pad, top + rows * (h + pad) + pad),
                  (255, 255, 255))
  draw = ImageDraw.Draw(out)
  for c, title in enumerate(titles):
    draw.text((pad + c * (w + pad), 3), str(title), fill=(0, 0, 0))
  for i, im in enumerate(images):
    out.paste(im, (pad + (i % columns) * (w + pad), top + pad + (i // columns) * (h + pad)))
  return out
