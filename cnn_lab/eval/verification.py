"""Face verification and one-shot identification metrics (host-side numpy).

Verification: a pair is "same" when the distance of its embeddings is at most a
threshold, chosen on validation pairs (`best_threshold`) and then applied to test
pairs. ROC over all thresholds: true-accept rate (same pairs accepted) against
false-accept rate (different pairs accepted); the equal error rate is where the false
accepts equal the false rejects; TAR at a FAR of 0.1% is the usual operating point.
Identification: a gallery of one embedding per identity (one-shot); a query takes the
nearest identity, or none ("not in the database") when even that is farther than the
threshold.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Iterator

import numpy as np

from cnn_lab.errors import fail


def _check_pairs(distances, same):
  distances, same = np.asarray(distances, np.float64), np.asarray(same, bool)
  if distances.ndim != 1 or distances.shape != same.shape:
    raise fail("distances, same", "two [P] arrays of one length",
               f"shapes {distances.shape} and {same.shape}")
  if not same.any() or same.all():
    raise fail("same", "both same-identity and different-identity pairs",
               f"{int(same.sum())} same of {len(same)}")
  return distances, same


def roc(distances, same):
  """-> (far, tar, thresholds): accepting pairs with distance <= threshold, for every
  distinct threshold, ascending (the first accepts nothing)."""
  distances, same = _check_pairs(distances, same)
  order = np.argsort(distances, kind="stable")
  d, s = distances[order], same[order]
  last = np.r_[np.flatnonzero(np.diff(d)), len(d) - 1]  # the end of each run of ties
  tar = np.r_[0.0, np.cumsum(s)[last] / s.sum()]
  far = np.r_[0.0, np.cumsum(~s)[last] / (~s).sum()]
  return far, tar, np.r_[-np.inf, d[last]]


def best_threshold(distances, same) -> float:
  """The distance threshold with the highest accuracy on these (validation) pairs."""
  distances, same = _check_pairs(distances, same)
  far, tar, thresholds = roc(distances, same)
  accuracy = (tar * same.sum() + (1 - far) * (~same).sum()) / len(same)
  i = int(np.argmax(accuracy))
  # midway to the next distance, so that a test pair at the same distance is not a coin toss
  upper = thresholds[i + 1] if i + 1 < len(thresholds) else thresholds[i]
  return float(thresholds[i] + (upper - thresholds[i]) / 2) if i > 0 else float(
      np.min(distances) / 2)


def ten_fold_accuracy(distances, same, fold) -> tuple[float, float]:
  """LFW's protocol (Huang et al. 2007): for each fold, the threshold best on the other
  folds, the accuracy on this one. -> (mean accuracy, its standard error over the folds)."""
  distances, same, fold = np.asarray(distances), np.asarray(same, bool), np.asarray(fold)
  accuracies = []
  for k in np.unique(fold):
    train, test = fold != k, fold == k
    threshold = best_threshold(distances[train], same[train])
    accuracies.append(np.mean((distances[test] <= threshold) == same[test]))
  accuracies = np.asarray(accuracies)
  return float(accuracies.mean()), float(accuracies.std(ddof=1) / np.sqrt(len(accuracies))
                                         if len(accuracies) > 1 else 0.0)


def verification_metrics(distances, same, threshold: float,
                         far_target: float = 1e-3) -> Iterator[tuple[str, float]]:
  """Yields accuracy at `threshold`, ROC AUC, the equal error rate and the TAR at a
  false-accept rate of `far_target` (the highest TAR whose FAR does not exceed it)."""
  distances, same = _check_pairs(distances, same)
  accept = distances <= threshold
  yield "accuracy", float(np.mean(accept == same))
  far, tar, _ = roc(distances, same)
  yield "roc_auc", float(np.trapezoid(tar, far))
  frr = 1 - tar
  i = int(np.argmin(np.abs(far - frr)))
  yield "eer", float((far[i] + frr[i]) / 2)
  yield f"tar_at_far_{far_target:g}", float(np.max(tar[far <= far_target]))


def all_pairs(labels, max_negatives: int | None = None, seed: int = 0):
  """Every same-identity pair of `labels [N]`, and as many different-identity pairs
  drawn at random (or `max_negatives`): -> (i [P], j [P], same [P])."""
  labels = np.asarray(labels)
  i, j = np.triu_indices(len(labels), 1)
  same = labels[i] == labels[j]
  rng = np.random.default_rng(seed)
  negatives = np.flatnonzero(~same)
  count = min(len(negatives), max_negatives or int(same.sum()))
  keep = np.sort(np.r_[np.flatnonzero(same), rng.choice(negatives, count, replace=False)])
  return i[keep], j[keep], same[keep]


def identify(queries, gallery, gallery_labels, threshold: float, distance=None):
  """One-shot identification: queries `[Q, D]` against a gallery `[G, D]` of identities
  `gallery_labels [G]` -> (labels [Q], -1 where the nearest is farther than
  `threshold`, and the distances to the nearest [Q]). `distance` as in
  `evaluate_faces` (default: squared Euclidean)."""
  queries, gallery = np.asarray(queries, np.float64), np.asarray(gallery, np.float64)
  if gallery.ndim != 2 or len(gallery) == 0:
    raise fail("gallery", "a database of at least one enrolled embedding [G, D]",
               f"shape {gallery.shape}")
  if queries.ndim != 2 or queries.shape[1] != gallery.shape[1]:
    raise fail("queries", f"embeddings [Q, {gallery.shape[1]}] like the gallery's",
               f"shape {queries.shape}")
  if not np.isfinite(threshold):
    raise fail("threshold", "a finite distance", threshold)
  distance = distance or squared_distances
  # The gallery in chunks: a learned distance may broadcast [Q, chunk, D]; ~64 MB each.
  chunk = max(1, 2**23 // max(1, len(queries) * gallery.shape[1]))
  nearest = np.zeros(len(queries), np.int64)
  best = np.full(len(queries), np.inf)
  for start in range(0, len(gallery), chunk):
    d = np.asarray(distance(queries, gallery[start:start + chunk]), np.float64)
    k = np.argmin(d, 1)
    closer = d[np.arange(len(d)), k] < best
    nearest[closer], best[closer] = start + k[closer], d[np.arange(len(d)), k][closer]
  labels = np.asarray(gallery_labels)[nearest]
  return np.where(best <= threshold, labels, -1), best


def squared_distances(a, b) -> np.ndarray:
  """`[A, D]`, `[B, D]` -> `[A, B]` squared Euclidean distances."""
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  return np.maximum(np.sum(a * a, 1)[:, None] - 2 * a @ b.T + np.sum(b * b, 1)[None, :], 0.0)


def _one_shot(embeddings, labels, known, unknown, distance):
  """Enrols the first image of each `known` identity (one shot); -> (nearest identity and
  its distance for every other known image, with their labels; nearest distance of every
  `unknown` image)."""
  members = np.flatnonzero(known)
  _, first = np.unique(labels[members], return_index=True)
  enrolled = members[first]
  queries = np.setdiff1d(members, enrolled)
  d = distance(embeddings[queries], embeddings[enrolled])
  strangers = np.min(distance(embeddings[np.flatnonzero(unknown)], embeddings[enrolled]), 1)
  return labels[enrolled][np.argmin(d, 1)], np.min(d, 1), labels[queries], strangers


def open_set_threshold(nearest, d_known, truth, d_strangers) -> float:
  """The threshold that maximises the mean of the known queries' accuracy (right
  identity within the threshold) and the strangers' rejection rate."""
  candidates = np.unique(np.r_[d_known, d_strangers])
  right = nearest == truth
  known_ok = np.array([np.mean(right & (d_known <= t)) for t in candidates])
  rejected = np.array([np.mean(d_strangers > t) for t in candidates])
  i = int(np.argmax(known_ok + rejected))
  # midway to the next candidate, as `best_threshold` does
  return float((candidates[i] + candidates[min(i + 1, len(candidates) - 1)]) / 2)


def evaluate_faces(embeddings, labels, *, validation: tuple, gallery: tuple,
                   strangers: tuple, distance=squared_distances,
                   far_target: float = 1e-3) -> Iterator[tuple[str, float]]:
  """Verification and one-shot identification on held-out identities.

  `embeddings [N, D]` of images whose identities `labels [N]` fall in three disjoint
  ranges `[lo, hi)`: `validation`, on which both thresholds are chosen, `gallery` and
  `strangers`. `distance(A, B) -> [|A|, |B|]`, smaller for the same identity (the
  binary variant passes minus its logit).
  Verification: pairs of the gallery and stranger identities, every same-identity pair
  and as many random different-identity ones (balanced, as LFW's protocol), at the
  threshold best on the validation identities' pairs.
  One-shot identification: the first image of each gallery identity is enrolled, its
  other images are the queries; closed set, the nearest identity; open set, the
  nearest within a second threshold, chosen on the validation identities split the
  same way (half enrolled, half strangers), beyond which an image is "not in the
  database"; the strangers' images should be rejected.
  Yields: threshold, verification_{accuracy, roc_auc, eer, tar_at_far_...},
  one_shot_identities, one_shot_accuracy, open_set_threshold, open_set_accuracy,
  stranger_rejection.
  """
  embeddings, labels = np.asarray(embeddings), np.asarray(labels)
  within = lambda r: (labels >= r[0]) & (labels < r[1])

  def pair_metrics(index):  # every same pair and as many different ones (LFW-style)
    d = distance(embeddings[index], embeddings[index])
    i, j, same = all_pairs(labels[index])
    return d[i, j], same

  threshold = best_threshold(*pair_metrics(np.flatnonzero(within(validation))))
  yield "threshold", threshold
  test = np.flatnonzero(within(gallery) | within(strangers))
  for name, value in verification_metrics(*pair_metrics(test), threshold, far_target):
    yield f"verification_{name}", value

  half = (validation[0] + validation[1]) // 2
  open_threshold = open_set_threshold(*_one_shot(
      embeddings, labels, within((validation[0], half)), within((half, validation[1])),
      distance))
  nearest, d_known, truth, d_strangers = _one_shot(embeddings, labels, within(gallery),
                                                   within(strangers), distance)
  yield "one_shot_identities", float(len(np.unique(labels[within(gallery)])))
  yield "one_shot_accuracy", float(np.mean(nearest == truth))
  yield "open_set_threshold", open_threshold
  yield "open_set_accuracy", float(np.mean((nearest == truth) & (d_known <= open_threshold)))
  yield "stranger_rejection", float(np.mean(d_strangers > open_threshold))


DATABASE_BYTES = 2**30  # the most an enrolled database may take once loaded


def _npy_header(archive: zipfile.ZipFile, name: str, path: str) -> tuple[tuple, np.dtype]:
  """(shape, dtype) of one array of an .npz, read from its header alone."""
  try:
    with archive.open(name) as f:
      version = np.lib.format.read_magic(f)
      read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
              else np.lib.format.read_array_header_2_0)
      shape, _, dtype = read(f)
  except (ValueError, OSError, zipfile.BadZipFile, EOFError) as e:
    raise fail("database", f"a readable {name}", f"{path} ({type(e).__name__}: {e})") from None
  return shape, dtype


def load_database(path: str, dim: int, max_bytes: int = DATABASE_BYTES
                  ) -> tuple[np.ndarray, np.ndarray]:
  """An enrolled database (`experiments.face enroll`: `names [G]` and `embeddings [G, D]`
  in one .npz), checked from the arrays' headers before anything is read: exactly
  those two arrays, G names for G embeddings of this model's `dim`, at most
  `max_bytes` in all (a small compressed file could otherwise expand to gigabytes);
  then every embedding finite."""
  if not path or not os.path.exists(path):
    raise fail("database", "an enrolled database (.npz from `enroll`)", path)
  if not zipfile.is_zipfile(path):
    raise fail("database", "an .npz written by `enroll`", f"{path} (not an .npz archive)")
  with zipfile.ZipFile(path) as archive:
    members = sorted(archive.namelist())
    if members != ["embeddings.npy", "names.npy"]:
      raise fail("database", "an .npz of names.npy and embeddings.npy", f"{path} holding "
                 f"{members[:5]}")
    (names_shape, names_dtype), (shape, dtype) = (
        _npy_header(archive, f"{key}.npy", path) for key in ("names", "embeddings"))
    if names_dtype.kind != "U" or len(names_shape) != 1:
      raise fail("database", "names [G] as text", f"{names_dtype} {names_shape} in {path}")
    if names_shape[0] == 0:
      raise fail("database", "at least one enrolled identity", f"{path!r} (empty)")
    if dtype.kind != "f" or len(shape) != 2 or shape[1] != dim:
      raise fail("database", f"embeddings [G, {dim}] of floats from this run's model",
                 f"{dtype} {shape} in {path!r}")
    if shape[0] != names_shape[0]:
      raise fail("database", "one name per embedding", f"{names_shape[0]} names and "
                 f"{shape[0]} embeddings in {path}")
    size = names_dtype.itemsize * names_shape[0] + dtype.itemsize * shape[0] * shape[1]
    if size > max_bytes:
      raise fail("database", f"at most {max_bytes} bytes once loaded", f"{size} in {path}")
    with np.load(path, allow_pickle=False) as f:
      names, embeddings = f["names"], f["embeddings"]
  if not np.isfinite(embeddings).all():
    raise fail("database", "finite embeddings", f"{int((~np.isfinite(embeddings)).sum())} "
               f"NaN or infinite values in {path}")
  return names, embeddings
