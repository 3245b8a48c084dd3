"""Splits decoded once into numpy arrays, and kept decoded on disk beside the dataset.

Reading a split record by record through TFDS (an array_record read and a feature
parse each) is slow for tens of thousands of records: 27 s for MNIST's 60,000
training images on 2 CPU cores, most of a short run. The arrays are therefore
written once, after the first decode, into `DATASET_DIR/decoded/` (one uncompressed
.npz per split and set of keys) and later runs load them in a fraction of a second.
A cache file is trusted only when it holds as many records as the split and its first
and last records equal the dataset's; otherwise (damage, another version) it is
decoded again and rewritten. A dataset folder that cannot be written (read-only,
a bucket) is read without the cache.
"""

from __future__ import annotations

import io
import os
import re
import zipfile

import numpy as np
from absl import logging

from cnn_lab import paths


class InMemorySource:
  """A split decoded once into numpy arrays: `source[i] -> {"image": [h, w, c], "label": ()}`.

  The embedded datasets and MNIST-sized catalog ones fit easily; per-record reads
  then cost ~1 us instead of ~30 us. Only `keys` are kept, after `encode` (e.g.
  `PadObjects`) has turned a record into fixed-shape fields. Without `encode`, the
  arrays are cached on disk (`cache_file`, module docstring).
  """

  def __init__(self, source, keys: tuple[str, ...] = ("image", "label"), encode=None):
    path = None if encode else cache_file(source, keys)
    self.arrays = load_checked(path, source, keys) if path else None
    if self.arrays is None:
      encode = encode or (lambda record: record)
      records = [encode(source[i]) for i in range(len(source))]
      self.arrays = {k: np.stack([np.asarray(r[k]) for r in records]) for k in keys}
      if path:
        save(path, self.arrays)

  def __len__(self) -> int:
    return len(self.arrays["image"])

  def __getitem__(self, i) -> dict:
    return {k: v[i] for k, v in self.arrays.items()}


def cache_file(source, keys: tuple[str, ...]) -> str | None:
  """Where `source`'s decoded `keys` are kept, or None (not a local TFDS split)."""
  info, split = getattr(source, "dataset_info", None), getattr(source, "split", None)
  folder = getattr(info, "data_dir", None)
  if not folder or not isinstance(split, str) or paths.is_url(str(folder)):
    return None
  if not os.path.exists(os.path.join(str(folder), "dataset_info.json")):
    return None  # not a prepared dataset's folder (TFDS's mock data names a fake one)
  name = re.sub(r"[^A-Za-z0-9_.+-]", "_", split) + "." + "-".join(keys) + ".npz"
  return os.path.join(str(folder), "decoded", name)


def load_checked(path: str, source, keys: tuple[str, ...]) -> dict | None:
  """The cached arrays when they are `source`'s (count, first and last record), else None."""
  if not os.path.exists(path):
    return None
  try:
    with np.load(path) as data:
      arrays = {k: data[k] for k in keys}
  except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
    logging.warning("Decoding the split again: its cache %s is unreadable (%s).", path, e)
    return None
  n = len(source)
  same = all(len(a) == n for a in arrays.values()) and n > 0 and all(
      np.array_equal(arrays[k][i], np.asarray(record[k]))
      for i, record in ((0, source[0]), (n - 1, source[n - 1])) for k in keys)
  if not same:
    logging.warning("Decoding the split again: its cache %s does not match the dataset.", path)
  return arrays if same else None


def save(path: str, arrays: dict) -> None:
  """Writes the arrays atomically; a folder that cannot be written is left as it is."""
  buffer = io.BytesIO()
  np.savez(buffer, **arrays)
  try:
    paths.make_dirs(os.path.dirname(path))
    paths.write_atomic(path, buffer.getvalue())
  except OSError as e:
    logging.info("Not caching the decoded split at %s (%s).", path, e.strerror or e)
