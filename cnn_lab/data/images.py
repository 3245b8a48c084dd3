"""Images from files or from scikit-image's shipped sample photos, as uint8 RGB arrays."""

from __future__ import annotations

import os
import warnings

import numpy as np
from PIL import Image, UnidentifiedImageError

from cnn_lab.errors import fail

SKIMAGE_SAMPLES = ("astronaut", "brick", "camera", "cat", "chelsea", "coffee", "coins",
                   "grass", "gravel", "horse", "hubble_deep_field", "immunohistochemistry",
                   "moon", "page", "rocket", "text")


def _to_uint8(image: Image.Image) -> np.ndarray:
  """uint8 `[H, W, 3]` from any PIL mode. High-depth gray is scaled by its range (PIL's
  own `convert("RGB")` clips a 16-bit image, turning it almost white): 16-bit by 65535,
  32-bit integers by 65535 when they fit 16 bits (how PNG's 16-bit gray opens) else by
  2**31 - 1, floats as [0, 1] when they fit it, else as [0, 255]."""
  if image.mode.startswith("I") or image.mode == "F":
    array = np.asarray(image, np.float64)
    if image.mode == "F":
      top = 1.0 if np.nanmax(array, initial=0) <= 1 else 255.0
    else:
      top = 65535.0 if image.mode.startswith("I;16") or array.max(initial=0) <= 65535 \
          else 2**31 - 1.0
    gray = np.round(np.clip(np.nan_to_num(array / top), 0, 1) * 255).astype(np.uint8)
    return np.repeat(gray[..., None], 3, -1)
  return np.asarray(image.convert("RGB"))


def _read_file(path: str) -> np.ndarray:
  with warnings.catch_warnings():  # PIL warns past MAX_IMAGE_PIXELS, refuses past twice it
    warnings.simplefilter("error", Image.DecompressionBombWarning)
    try:
      with Image.open(path) as f:
        return _to_uint8(f)
    except FileNotFoundError:
      raise fail("image", f"an image file or one of scikit-image's samples "
                 f"{list(SKIMAGE_SAMPLES)}", path) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
      raise fail("image", f"an image of at most {Image.MAX_IMAGE_PIXELS} pixels (a larger "
                 "one may be a decompression bomb)", f"{path} ({e})") from None
    except (UnidentifiedImageError, OSError, ValueError) as e:
      raise fail("image", "a readable image file (PNG, JPEG, ...)",
                 f"{path!r} ({type(e).__name__})") from None


def load_image(path_or_name: str) -> np.ndarray:
  """A file path, or a scikit-image sample name (e.g. "chelsea") -> uint8 `[H, W, 3]`."""
  if not os.path.exists(path_or_name) and path_or_name in SKIMAGE_SAMPLES:
    from skimage import data
    image = np.asarray(getattr(data, path_or_name)())
    if image.dtype != np.uint8:  # "horse" is a boolean mask
      image = (np.clip(image, 0, 1) * 255).round().astype(np.uint8)
    if image.ndim == 2:
      image = np.repeat(image[..., None], 3, -1)
    return image[..., :3]
  return _read_file(path_or_name)
