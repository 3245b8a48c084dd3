"""Batch orders: which records make training batch i, from (seed, i) alone, so a stream
is reproducible and resumes anywhere. `ShuffledBatches` (a fresh permutation each
epoch) is the default; `IdentityBatches` and `PairBatches` serve metric learning
(`Task.batch_order`); `per_class_indices` draws few-shot subsets."""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

from cnn_lab.errors import fail


def per_class_indices(labels, per_class: int, seed: int = 0) -> np.ndarray:
  """`per_class` indices of each class, drawn without replacement by `seed` (the same
  draw for every run and variant: few-shot splits are shared), sorted."""
  labels = np.asarray(labels)
  rng = np.random.default_rng(seed)
  chosen = []
  for c in np.unique(labels):
    members = np.flatnonzero(labels == c)
    if len(members) < per_class:
      raise fail("dataset.train_per_class", f"<= the {len(members)} examples of class {c}",
                 per_class)
    chosen.append(rng.choice(members, per_class, replace=False))
  return np.sort(np.concatenate(chosen))


@functools.lru_cache(maxsize=4)
def _permutation(seed: int, size: int, epoch: int) -> np.ndarray:
  return np.random.default_rng((seed, epoch)).permutation(size)


@dataclasses.dataclass(frozen=True)
class ShuffledBatches:
  """Batch i -> the `batch` record indices it holds, in a stream of epochs, each a fresh
  permutation of `size` records by (seed, epoch); batches run across epoch boundaries,
  so none is short and no record is dropped."""
  size: int
  batch: int
  seed: int

  def __call__(self, i: int) -> np.ndarray:
    start, parts = int(i) * self.batch, []
    while sum(len(p) for p in parts) < self.batch:
      epoch, offset = divmod(start, self.size)
      take = min(self.batch - sum(len(p) for p in parts), self.size - offset)
      parts.append(_permutation(self.seed, self.size, epoch)[offset:offset + take])
      start += take
    return np.concatenate(parts)


def _identities(labels) -> list[np.ndarray]:
  """The record indices of each identity that has at least two records."""
  values, inverse = np.unique(np.asarray(labels).reshape(-1), return_inverse=True)
  members = [np.flatnonzero(inverse == v) for v in range(len(values))]
  return [m for m in members if len(m) >= 2]


class IdentityBatches:
  """Batch i -> P identities x K images each, for online triplet mining (FaceNet,
  Hermans et al.): `identities` distinct identities drawn at random, then `images` of
  each (without replacement where an identity has enough), grouped by identity.
  Drawn from (seed, i) alone, so the stream is reproducible and resumes anywhere.
  Identities with a single image never come up: they cannot be an anchor's positive."""

  def __init__(self, labels, identities: int, images: int, seed: int):
    self.members = _identities(labels)
    if images < 2:
      raise fail("images", "at least 2 images per identity (a positive for each anchor)",
                 images)
    if not 2 <= identities <= len(self.members):
      raise fail("identities", f"2 to {len(self.members)} identities per batch (those "
                 "with 2 or more images)", identities)
    self.identities, self.images, self.seed = identities, images, seed

  def __call__(self, i: int) -> np.ndarray:
    rng = np.random.default_rng((self.seed, int(i)))
    chosen = rng.choice(len(self.members), self.identities, replace=False)
    return np.concatenate([rng.choice(self.members[c], self.images,
                                      replace=len(self.members[c]) < self.images)
                           for c in chosen])


class PairBatches:
  """Batch i -> `batch` indices forming `batch / 2` labelled pairs (2j, 2j + 1), the
  first half of the same identity, the second half of two different ones, for the
  Siamese binary classifier. Drawn from (seed, i)."""

  def __init__(self, labels, batch: int, seed: int):
    if batch < 4 or batch % 4:
      raise fail("batch", "a multiple of 4 (half same, half different pairs)", batch)
    self.members = _identities(labels)
    if len(self.members) < 2:
      raise fail("labels", "at least 2 identities with 2 or more records",
                 f"{len(self.members)}")
    self.batch, self.seed = batch, seed

  def __call__(self, i: int) -> np.ndarray:
    rng = np.random.default_rng((self.seed, int(i)))
    pairs = []
    for j in range(self.batch // 2):
      if j < self.batch // 4:
        m = self.members[rng.integers(len(self.members))]
        pairs.append(rng.choice(m, 2, replace=False))
      else:
        a, b = rng.choice(len(self.members), 2, replace=False)
        pairs.append([rng.choice(self.members[a]), rng.choice(self.members[b])])
    return np.asarray(pairs).reshape(-1)
