"""grain pipelines: deterministic shuffling, preprocessing, augmentation, batching, host sharding.

Records are batched raw (small uint8 arrays) and preprocessed a batch at a time,
vectorised; random augmentation runs on device (see `cnn_lab.data.augment`).

Training: `train_dataset(...)` is an infinite, epoch-reshuffled MapDataset of
local batches; `iter(ds.to_iter_dataset())` has `get_state()`/`set_state()`,
checkpointed with the model. Evaluation: `eval_dataset(...)` visits every
example exactly once, the last batch padded and marked by `mask`.
Batches are dicts `{"image": float32 [B, S, S, C], "label": int32 [B], ("mask": bool [B])}`.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import grain
import numpy as np

from cnn_lab.data.in_memory import InMemorySource
from cnn_lab.data.order import ShuffledBatches
from cnn_lab.errors import fail


@dataclasses.dataclass(frozen=True)
class PadObjects:
  """A record's variable-length `objects` -> fixed-shape fields, for batching:
  `boxes` float32 `[M, 4]` normalised (x1, y1, x2, y2), `classes` int32 `[M]` (-1 pads),
  `landmarks` float32 `[M, L, 2]` normalised (x, y) when the dataset has them.

  TFDS gives boxes as (ymin, xmin, ymax, xmax) and shapes' landmarks as (y, x);
  more than `max_objects` objects is an error rather than a silent drop.
  """
  max_objects: int
  num_landmarks: int = 0

  def __call__(self, record: dict) -> dict:
    objects = record["objects"]
    bbox = np.asarray(objects["bbox"], np.float32).reshape(-1, 4)
    n = len(bbox)
    if len(objects["label"]) != n:
      raise fail("objects", "as many labels as boxes", f"{len(objects['label'])} and {n}")
    if n > self.max_objects:
      raise fail("max_objects", f">= the {n} objects of a record", self.max_objects)
    boxes = np.zeros((self.max_objects, 4), np.float32)
    boxes[:n] = bbox[:, [1, 0, 3, 2]]
    classes = np.full(self.max_objects, -1, np.int32)
    classes[:n] = np.asarray(objects["label"], np.int64).reshape(-1)
    out = {**{k: v for k, v in record.items() if k != "objects"}, "boxes": boxes,
           "classes": classes}
    if self.num_landmarks:
      points = np.zeros((self.max_objects, self.num_landmarks, 2), np.float32)
      points[:n] = np.asarray(objects["landmarks"], np.float32).reshape(
          n, self.num_landmarks, 2)[..., ::-1]
      out["landmarks"] = points
    return out


@dataclasses.dataclass(frozen=True)
class Preprocess:
  """A batch of uint8 `[B, h, w, c]` -> float32 `[B, size, size, c]`: bilinear resize
  (or zero-pad to centre), then (x / 255 - mean) / std; labels -> int32."""
  size: int
  mean: float | tuple = 0.0
  std: float | tuple = 1.0
  method: str = "resize"  # or "pad": centre on a zero canvas (MNIST 28 -> 32 as LeNet had it)

  @classmethod
  def for_dataset(cls, dataset) -> "Preprocess":
    """The preprocessing a config's `dataset` section trains with (image_size, mean, std,
    resize_method): what every tool that feeds a trained model must apply too."""
    return cls(dataset.image_size, dataset.mean, dataset.std, dataset.resize_method)

  def __post_init__(self):
    if self.method not in ("resize", "pad"):
      raise fail("preprocess.method", "'resize' or 'pad'", self.method)

  def __call__(self, batch: dict) -> dict:
    images = np.asarray(batch["image"], np.float32) * (1.0 / 255.0)
    images = _resize(images, self.size) if self.method == "resize" else \
        _pad(images, self.size)
    mean, std = np.asarray(self.mean, np.float32), np.asarray(self.std, np.float32)
    out = {**batch, "image": (images - mean) / std}  # scalars or per-channel tuples
    if "label" in batch:
      out["label"] = np.asarray(batch["label"], np.int32)
    if "segmentation" in batch:  # class maps follow the image, nearest neighbour
      out["segmentation"] = _resize_nearest(np.asarray(batch["segmentation"]), self.size) \
          if self.method == "resize" else _pad(np.asarray(batch["segmentation"])[..., None],
                                               self.size)[..., 0]
    return out

  def one(self, record: dict) -> dict:
    """One record `[h, w, c]` of any size -> `[size, size, c]` (datasets of varying sizes)."""
    batch = self({k: np.asarray(v)[None] for k, v in record.items()})
    return {k: v[0] for k, v in batch.items()}


@dataclasses.dataclass(frozen=True)
class SegmentationTarget:
  """A record's per-pixel class map -> `segmentation` int32 `[H, W]` in [0, num_classes).

  `key`: the dataset's mask field (`mask` for shapes, `segmentation_mask` for
  oxford_iiit_pet); `offset` is added to the stored ids (the pets' 1..3 -> 0..2).
  A mask whose size differs from the image, or an id outside the range, is an error.
  """
  num_classes: int
  key: str = "mask"
  offset: int = 0

  def __call__(self, record: dict) -> dict:
    mask = np.asarray(record[self.key])
    mask = mask[..., 0] if mask.ndim == 3 and mask.shape[-1] == 1 else mask
    image_hw = np.shape(record["image"])[:2]
    if mask.shape != image_hw:
      raise fail(self.key, f"a mask of the image's size {image_hw}", mask.shape)
    labels = mask.astype(np.int32) + self.offset
    if labels.size and (labels.min() < 0 or labels.max() >= self.num_classes):
      raise fail(self.key, f"class ids in [0, {self.num_classes}) after offset "
                 f"{self.offset}", f"ids {sorted(set(np.unique(labels).tolist()))}")
    out = {k: v for k, v in record.items() if k != self.key}
    return {**out, "segmentation": labels}


@functools.lru_cache(maxsize=16)
def _interpolation_matrix(n_in: int, n_out: int) -> np.ndarray:
  """`[n_out, n_in]` linear interpolation weights, pixel centres aligned (half-pixel)."""
  pos = (np.arange(n_out) + 0.5) * n_in / n_out - 0.5
  lo = np.clip(np.floor(pos).astype(int), 0, n_in - 1)
  hi = np.clip(lo + 1, 0, n_in - 1)
  frac = np.clip(pos - lo, 0.0, 1.0)
  m = np.zeros((n_out, n_in), np.float32)
  m[np.arange(n_out), lo] += 1 - frac
  m[np.arange(n_out), hi] += frac
  return m


def _resize(images: np.ndarray, size: int) -> np.ndarray:
  _, h, w, _ = images.shape
  if (h, w) == (size, size):
    return images
  rows = np.matmul(_interpolation_matrix(h, size), images.transpose(0, 3, 1, 2))
  return np.matmul(rows, _interpolation_matrix(w, size).T).transpose(0, 2, 3, 1)


def _resize_nearest(maps: np.ndarray, size: int) -> np.ndarray:
  """`[B, h, w]` integer maps -> `[B, size, size]`, nearest pixel centre."""
  _, h, w = maps.shape
  if (h, w) == (size, size):
    return maps
  rows = np.minimum(((np.arange(size) + 0.5) * h / size).astype(int), h - 1)
  cols = np.minimum(((np.arange(size) + 0.5) * w / size).astype(int), w - 1)
  return maps[:, rows][:, :, cols]


def _pad(images: np.ndarray, size: int) -> np.ndarray:
  _, h, w, _ = images.shape
  if h > size or w > size:
    raise fail("preprocess.size", f">= the image size {(h, w)} for method='pad'", size)
  top, left = (size - h) // 2, (size - w) // 2
  return np.pad(images, ((0, 0), (top, size - h - top), (left, size - w - left), (0, 0)))


def local_batch_size(global_batch: int, process_count: int) -> int:
  if global_batch % process_count:
    raise fail("batch_size", f"a multiple of the number of hosts {process_count}",
               global_batch)
  return global_batch // process_count


class SelectKeys:
  """A source whose records keep only `keys` (a task's fields; drops ids and the
  variable-length extras that could not be batched) after `encode`, for sources too
  large to cache."""

  def __init__(self, source, keys: tuple[str, ...] = ("image", "label"), encode=None):
    self.source, self.keys, self.encode = source, keys, encode or (lambda record: record)

  def __len__(self) -> int:
    return len(self.source)

  def __getitem__(self, i) -> dict:
    record = self.encode(self.source[i])
    return {k: record[k] for k in self.keys}


class Subset:
  """The records `indices` of `source`, in that order."""

  def __init__(self, source, indices):
    self.source, self.indices = source, np.asarray(indices, np.int64)

  def __len__(self) -> int:
    return len(self.indices)

  def __getitem__(self, i) -> dict:
    return self.source[int(self.indices[i])]


def gather(source, indices: np.ndarray, fix=None) -> dict:
  """Records `indices` of `source` stacked into a batch; one fancy-index per field when
  the source is in memory (64 records of 8x8: ~10 us instead of ~2 ms through per-record
  calls). `fix` maps each record first (records of varying sizes)."""
  if fix is None and isinstance(source, InMemorySource):
    return {k: v[indices] for k, v in source.arrays.items()}
  records = [source[int(i)] for i in indices]
  records = [fix(r) for r in records] if fix else records
  return {k: np.stack([r[k] for r in records]) for k in records[0]}


def train_dataset(source, *, global_batch: int, seed: int, preprocess: Preprocess,
                  process_index: int = 0, process_count: int = 1,
                  per_record: bool = False, order=None) -> grain.MapDataset:
  """Infinite stream of this host's batches; a new permutation every epoch.

  The order is drawn over the whole source, so global batch i holds the same records
  on any number of hosts; host h reads only its contiguous slice of `global_batch /
  process_count` of them. Batches are gathered whole (see `gather`); `per_record`
  preprocesses each record before stacking, for datasets whose images differ in
  size. The iterator's state is the batch index, the same on every host, so a
  checkpointed run resumes on the next batch. `order`: another batch i -> indices map
  of `global_batch` (e.g. `IdentityBatches`); default a `ShuffledBatches`.
  """
  local = local_batch_size(global_batch, process_count)
  if len(source) < global_batch:
    raise fail("batch_size", f"<= the {len(source)} training examples", global_batch)
  order = order or ShuffledBatches(len(source), global_batch, seed)
  mine = slice(process_index * local, (process_index + 1) * local)
  fix = preprocess.one if per_record else None
  ds = grain.MapDataset.range(2 ** 62).map(lambda i: gather(source, order(i)[mine], fix))
  return ds if per_record else ds.map(preprocess)


def eval_dataset(source, *, global_batch: int, preprocess: Preprocess, process_index: int = 0,
                 process_count: int = 1, per_record: bool = False) -> grain.MapDataset:
  """Every example exactly once; the tail padded with zeros and `mask=False`.

  Global batch b holds examples [b*B, (b+1)*B); host h takes its contiguous
  slice of it, so all hosts run the same number of steps.
  """
  local = local_batch_size(global_batch, process_count)
  n = len(source)
  num_batches = math.ceil(n / global_batch)
  fix = preprocess.one if per_record else (lambda record: record)
  blank = {k: np.zeros_like(v) for k, v in fix(source[0]).items()}

  def fetch(i: int) -> dict:
    b, j = divmod(i, local)
    index = b * global_batch + process_index * local + j
    if index < n:
      return {**fix(source[index]), "mask": np.bool_(True)}
    return {**blank, "mask": np.bool_(False)}

  ds = grain.MapDataset.range(num_batches * local).map(fetch).batch(local)
  return ds if per_record else ds.map(preprocess)
