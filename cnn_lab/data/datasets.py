"""Datasets by name: embedded builders prepared offline on first use, or TFDS catalog ones.

`load_source(name, split, data_dir)` returns a random-access source
(`tfds.data_source`, array_record) of dicts with `image` `[H, W, C]` uint8 and
`label` int. Switching from `digits` to `mnist` is a config value.

Embedded datasets are prepared under a file lock (two processes preparing the same
one: the second waits and reuses the first's), checked on every open (a split whose
first or last record does not read back, or a version folder without its
`dataset_info.json`, e.g. from a killed first run, is deleted and prepared again,
with a warning).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import importlib
import io
import os
import shutil
import socket
import sys

import tensorflow_datasets as tfds
from absl import logging

from cnn_lab.data import faces as _faces
from cnn_lab.data import shapes as _shapes
from cnn_lab.errors import UnavailableError, fail

DEFAULT_DATA_DIR = os.path.join(os.path.expanduser("~"), ".cache", "cnn_lab", "tfds")


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
  num_classes: int
  image_shape: tuple  # (H, W, C); None where images vary in size
  train_split: str = "train"
  eval_split: str = "test"
  # the module of `cnn_lab.data` whose TFDS builder prepares it here, offline ("": a
  # catalog dataset); imported when the dataset is first prepared
  embedded: str = ""
  builder: str = ""  # the TFDS builder's name, where it is not the dataset's


SPECS = {
    "digits": DatasetSpec(10, (8, 8, 1), embedded="digits"),
    # the real MNIST, embedded (cnn_lab.data.mnist); TFDS's catalog builder owns `mnist`
    "mnist": DatasetSpec(10, (28, 28, 1), embedded="mnist", builder="lecun_mnist"),
    "fashion_mnist": DatasetSpec(10, (28, 28, 1)),
    "cifar10": DatasetSpec(10, (32, 32, 3)),
    "imagenette": DatasetSpec(10, (None, None, 3), eval_split="validation"),
    "imagenet2012": DatasetSpec(1000, (None, None, 3), eval_split="validation"),
    "voc/2007": DatasetSpec(20, (None, None, 3), train_split="train+validation"),
    "oxford_iiit_pet": DatasetSpec(37, (None, None, 3)),  # 37 breeds; masks: 3 classes
    "tf_flowers": DatasetSpec(5, (None, None, 3), train_split="train[:80%]",
                              eval_split="train[80%:]"),  # one split upstream
    "cats_vs_dogs": DatasetSpec(2, (None, None, 3), train_split="train[:80%]",
                                eval_split="train[80%:]"),
    # 5,749 people, names as labels, one split; verification uses `cnn_lab.data.lfw`
    "lfw": DatasetSpec(5749, (250, 250, 3), eval_split="train"),
    **{f"shapes/{c.name}": DatasetSpec(len(_shapes.CLASSES), (c.size, c.size, 3), embedded="shapes")
       for c in _shapes.Shapes.BUILDER_CONFIGS},
    # identities, disjoint across splits: num_classes counts the training identities
    # (evaluation: thresholds on validation identities, metrics on test identities)
    **{f"faces/{c.name}": DatasetSpec(len(_faces.split_identities("train")),
                                      (c.size, c.size, 3), eval_split="validation+test",
                                      embedded="faces")
       for c in _faces.Faces.BUILDER_CONFIGS},
}


class DatasetUnavailableError(UnavailableError):
  """A catalog dataset is neither prepared locally nor downloadable."""


def data_dir_or_default(data_dir: str | None) -> str:
  return data_dir or os.environ.get("CNN_LAB_DATA_DIR") or DEFAULT_DATA_DIR


def spec(name: str) -> DatasetSpec:
  if name not in SPECS:
    raise fail("dataset", f"one of {sorted(SPECS)} (embedded: "
               f"{sorted(n for n, s in SPECS.items() if s.embedded)})", name)
  return SPECS[name]


def _network_reachable(host: str = "storage.googleapis.com", timeout: float = 3.0) -> str | None:
  """None when `host` answers on 443, else the reason it does not."""
  try:
    socket.create_connection((host, 443), timeout=timeout).close()
    return None
  except OSError as e:
    return f"{type(e).__name__}: {e}"


def builder_name(name: str) -> str:
  """The TFDS builder that holds dataset `name`, registered with TFDS (an embedded
  dataset's module is imported: `tfds.builder` finds it by name only then)."""
  if spec(name).embedded:
    importlib.import_module(f"cnn_lab.data.{spec(name).embedded}")
  return spec(name).builder or name


@contextlib.contextmanager
def _preparation_lock(data_dir: str, name: str):
  """An exclusive lock per dataset and data dir (local dirs; a bucket is not locked)."""
  if "://" in data_dir:
    yield
    return
  os.makedirs(data_dir, exist_ok=True)
  with open(os.path.join(data_dir, f".{name.replace('/', '_')}.lock"), "w") as handle:
    fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file closes
    yield


def _damage(builder) -> str | None:
  """None when every split's first and last record read back, else what failed."""
  try:
    for split, info in builder.info.splits.items():
      source = builder.as_data_source(split)
      if len(source) != info.num_examples:
        return f"split {split} holds {len(source)} of {info.num_examples} records"
      for i in {0, len(source) - 1} if len(source) else ():
        if source[i] is None:
          return f"record {i} of split {split} is empty"
  except Exception as e:  # noqa: BLE001  any failure to read means damage
    return f"{type(e).__name__}: {e}"
  return None


def _prepare_embedded(name: str, data_dir: str):
  tfds_name = builder_name(name)
  if tfds_name != name and "://" not in data_dir and os.path.isdir(os.path.join(data_dir, name)):
    logging.info("Using the embedded %s (%s) in %s; the TFDS catalog %s prepared there is "
                 "not used: it holds the same images in another record order, and the "
                 "embedded one keeps the published order (see cnn_lab/data/%s.py).", name,
                 tfds_name, data_dir, name, name)
  with _preparation_lock(data_dir, tfds_name):
    builder = tfds.builder(tfds_name, data_dir=data_dir, file_format="array_record")
    if builder.is_prepared():
      damage = _damage(builder)
      if damage is None:
        return builder
      logging.warning("Dataset %s in %s is damaged (%s); preparing it again.", name,
                      builder.data_dir, damage)
    if os.path.isdir(builder.data_dir):  # damaged, or left without dataset_info.json
      shutil.rmtree(builder.data_dir)
      builder = tfds.builder(tfds_name, data_dir=data_dir, file_format="array_record")
    logging.info("Preparing the embedded dataset %s in %s (once).", name, data_dir)
    tfds.display_progress_bar(False)
    with contextlib.redirect_stdout(io.StringIO()):  # TFDS's download banners: none here
      builder.download_and_prepare(file_format="array_record")
    return builder


def prepare(name: str, data_dir: str | None = None):
  """Prepares `name` as array_record under `data_dir` if needed; returns the builder."""
  embedded = spec(name).embedded  # validates the name first
  data_dir = data_dir_or_default(data_dir)
  if embedded:
    return _prepare_embedded(name, data_dir)
  builder = tfds.builder(name, data_dir=data_dir, file_format="array_record")
  if builder.is_prepared():
    damage = _damage(builder)
    if damage is None:
      return builder
    # A catalog dataset cannot be rebuilt offline: say what to delete, touch nothing.
    raise DatasetUnavailableError(
        f"dataset '{name}' in {builder.data_dir} is damaged ({damage:.200}); delete that "
        "folder and prepare it again (see README, Datasets)")
  if os.path.isdir(builder.data_dir):
    raise DatasetUnavailableError(
        f"dataset '{name}' in {builder.data_dir} was never completely prepared (no "
        "dataset_info.json); delete that folder and prepare it again (see README, Datasets)")
  reason = _network_reachable()
  if reason is not None:
    # TFDS would retry each download for minutes; say it at once instead.
    raise DatasetUnavailableError(
        f"dataset '{name}' is not prepared in {data_dir} and cannot be downloaded "
        f"({reason}); prepare it where there is network with `pip install "
        f"-e '.[tf]' && tfds build {name} --file_format=array_record "
        f"--data_dir={data_dir}` and copy the folder here, or use dataset='digits'")
  logging.info("Preparing dataset %s in %s", name, data_dir)
  tfds.display_progress_bar(sys.stderr.isatty())  # no bars in a log file
  builder.download_and_prepare(file_format="array_record")
  return builder


def splits(dataset) -> tuple[str, str]:
  """(training split, evaluation split) of a config's `dataset` section: its own
  `train_split` / `eval_split` where set (e.g. MNIST's hold-out `train[50000:]`),
  else the dataset's."""
  default = spec(dataset.name)
  return (dataset.get("train_split", "") or default.train_split,
          dataset.get("eval_split", "") or default.eval_split)


def evaluation_source(dataset):
  """The evaluation split of a config's `dataset` section, as the run evaluated on it:
  what the tools that reread a trained run's data use."""
  return load_source(dataset.name, splits(dataset)[1], dataset.data_dir or None)


def load_source(name: str, split: str, data_dir: str | None = None):
  """A random-access source of `{"image": uint8 [H, W, C], "label": int}` for one split."""
  builder = prepare(name, data_dir)
  names = [part.split("[")[0] for part in split.split("+")]  # "train[:80%]+validation"
  if builder.info.splits and any(n not in builder.info.splits for n in names):
    raise fail("split", f"one of {sorted(builder.info.splits)} (slices allowed)", split)
  return builder.as_data_source(split)
