"""The TFDS feature the embedded builders store their pixels in."""

from __future__ import annotations

import numpy as np
import tensorflow_datasets as tfds


def pixels(shape: tuple[int, ...]) -> tfds.features.Tensor:
  """uint8 `shape` (an image `[H, W, C]` or a mask) stored as its raw bytes.

  TFDS's default encoding widens every uint8 to an int64 of the record, converted one
  Python value at a time: that was 7.5 s of the 20.6 s that preparing `shapes/single_64`
  took, and reading it back builds the same 12,288-element list per image. Raw bytes are
  written and read with one `tobytes` / `frombuffer`; the values are the same."""
  return tfds.features.Tensor(shape=shape, dtype=np.uint8,
                              encoding=tfds.features.Encoding.BYTES)
