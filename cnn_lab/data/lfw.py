"""Labeled Faces in the Wild: the standard pairs protocol (Huang et al. 2007).

The TFDS catalog `lfw` (13,233 photographs of 5,749 people, 250x250, one `train`
split, names as labels) is registered in `cnn_lab.data.datasets` for training; the
verification benchmark reads the original release instead, laid out as
`ROOT/<Name>/<Name>_<nnnn>.jpg`, with its `pairs.txt`: a header `folds pairs`, then
per fold `pairs` matched lines `name i j` followed by `pairs` mismatched lines
`name1 i name2 j`. The protocol is 10-fold: the threshold is chosen on nine folds and
the accuracy measured on the tenth, then averaged
(`cnn_lab.eval.verification.ten_fold_accuracy`).
Nothing here downloads; `pairs.txt` and the images must be on disk.
"""

from __future__ import annotations

import os

import numpy as np

from cnn_lab.errors import fail


def image_path(root: str, name: str, number: int) -> str:
  return os.path.join(root, name, f"{name}_{number:04d}.jpg")


def read_pairs(pairs_file: str, root: str) -> tuple[list[tuple[str, str]], np.ndarray,
                                                       np.ndarray]:
  """-> (pairs of image paths, same [P] bool, fold [P] int) from LFW's `pairs.txt`."""
  if not os.path.exists(pairs_file):
    raise fail("pairs_file", "LFW's pairs.txt (download it with the images)", pairs_file)
  with open(pairs_file) as f:
    lines = [line.split() for line in f if line.strip()]
  try:
    folds, per_fold = (int(v) for v in lines[0][:2])
  except (IndexError, ValueError):
    raise fail("pairs_file", "a first line 'folds pairs_per_fold'",
               " ".join(lines[0]) if lines else "an empty file") from None
  body = lines[1:]
  if len(body) != 2 * folds * per_fold:
    raise fail("pairs_file", f"{2 * folds * per_fold} pair lines ({folds} folds of "
               f"{per_fold} matched + {per_fold} mismatched)", f"{len(body)} lines")
  pairs, same, fold = [], [], []
  for k, fields in enumerate(body):
    if len(fields) == 3:
      name, i, j = fields
      pairs.append((image_path(root, name, int(i)), image_path(root, name, int(j))))
      same.append(True)
    elif len(fields) == 4:
      a, i, b, j = fields
      pairs.append((image_path(root, a, int(i)), image_path(root, b, int(j))))
      same.append(False)
    else:
      raise fail("pairs_file", "lines 'name i j' or 'name1 i name2 j'",
                 f"line {k + 2}: {' '.join(fields)!r}")
    fold.append(k // (2 * per_fold))
  return pairs, np.asarray(same), np.asarray(fold)
