"""Images from files or from scikit-image's shipped sample photos, as uint8 RGB arrays."""

from __future__ import annotations

import os

import numpy as np
from PIL import Image, UnidentifiedImageError

from cnn_lab.errors import fail

SKIMAGE_SAMPLES = ("astronaut", "brick", "camera", "cat", "chelsea", "coffee", "coins",
                   "grass", "gravel", "horse", "hubble_deep_field", "immunohistochemistry",
                   "moon", "page", "rocket", "text")


def load_image(path_or_name: str) -> np.ndarray:
  """A file path, or a scikit-image sample name (e.g. "chelsea") -> uint8 `[H, W, 3]`."""
  if not os.path.exists(path_or_name) and path_or_name in SKIMAGE_SAMPLES:
    from skimage import data
    image = np.asarray(getattr(data, path_or_name)())
  else:
    try:
      with Image.open(path_or_name) as f:
        image = np.asarray(f.convert("RGB"))
    except FileNotFoundError:
      raise fail("image", f"an image file or one of scikit-image's samples "
                 f"{list(SKIMAGE_SAMPLES)}", path_or_name) from None
    except (UnidentifiedImageError, OSError) as e:
      raise fail("image", "a readable image file (PNG, JPEG, ...)",
                 f"{path_or_name!r} ({type(e).__name__})") from None
  if image.dtype != np.uint8:
    image = (np.clip(image, 0, 1) * 255).round().astype(np.uint8) if image.max() <= 1 \
        else image.astype(np.uint8)
  if image.ndim == 2:
    image = np.repeat(image[..., None], 3, -1)
  return image[..., :3]
