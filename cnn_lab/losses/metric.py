"""Metric-learning losses: the triplet loss, online triplet mining, and the Siamese
binary-classification variant (Schroff et al. 2015, FaceNet; Taigman et al. 2014).

Embeddings are `[N, D]` (L2-normalised by the embedding network); distances are
squared Euclidean, as in the course: d(a, b) = ||f(a) - f(b)||^2.
Mining takes one batch of embeddings with identity labels `[N]` (P identities x K
images, `cnn_lab.data.pipeline.PKBatches`): every anchor needs another image of its
own identity, which is checked whenever the labels are concrete (outside `jit`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from cnn_lab.errors import fail


def _check_embeddings(**arrays):
  shapes = {name: jnp.shape(a) for name, a in arrays.items()}
  first_name, first = next(iter(shapes.items()))
  for name, shape in shapes.items():
    if len(shape) != 2:
      raise fail(name, "embeddings [N, D]", f"shape {shape}")
    if shape != first:
      raise fail(name, f"the shape of {first_name} {first}", f"shape {shape}")


def check_identities(labels) -> None:
  """Every identity of a mining batch appears at least twice (concrete labels only)."""
  if isinstance(labels, jax.core.Tracer):
    return
  values, counts = np.unique(np.asarray(labels), return_counts=True)
  if len(values) < 2 or np.any(counts < 2):
    lonely = values[counts < 2].tolist()
    raise fail("labels", "at least 2 identities, each with at least 2 images in the batch "
               "(a P x K batch, K >= 2)",
               f"{len(values)} identities; {len(lonely)} with one image: {lonely[:5]}")


def squared_distances(embeddings):
  """`[N, D]` -> `[N, N]` squared Euclidean distances (clamped at 0 against rounding)."""
  norms = jnp.sum(embeddings * embeddings, -1)
  d = norms[:, None] - 2.0 * embeddings @ embeddings.T + norms[None, :]
  return jnp.maximum(d, 0.0)


def triplet_loss(anchor, positive, negative, alpha: float = 0.2):
  """The course's triplet loss, summed over the batch:
  sum_i max(||a_i - p_i||^2 - ||a_i - n_i||^2 + alpha, 0). All three `[N, D]`."""
  _check_embeddings(anchor=anchor, positive=positive, negative=negative)
  pos = jnp.sum((anchor - positive) ** 2, -1)
  neg = jnp.sum((anchor - negative) ** 2, -1)
  return jnp.sum(jnp.maximum(pos - neg + alpha, 0.0))


def _masks(labels):
  same = labels[:, None] == labels[None, :]
  eye = jnp.eye(labels.shape[0], dtype=bool)
  return same & ~eye, ~same  # positives (a != p), negatives


def batch_all_triplet_loss(embeddings, labels, alpha: float = 0.2):
  """Every valid (a, p, n) of the batch: the mean over triplets with a positive loss.
  -> (loss, {"active_triplets": fraction of valid triplets with loss > 0})."""
  _check_embeddings(embeddings=embeddings)
  check_identities(labels)
  d = squared_distances(embeddings)
  positive, negative = _masks(labels)
  valid = positive[:, :, None] & negative[:, None, :]
  losses = jnp.where(valid, jnp.maximum(d[:, :, None] - d[:, None, :] + alpha, 0.0), 0.0)
  active = jnp.sum(losses > 1e-12)
  return (jnp.sum(losses) / jnp.maximum(active, 1),
          {"active_triplets": active / jnp.maximum(jnp.sum(valid), 1)})


def random_triplet_loss(embeddings, labels, alpha: float = 0.2, *, key):
  """No mining: each anchor with a random positive and a random negative of the batch
  (`triplet_loss` per anchor), the mean over anchors. -> (loss, {"active_triplets"})."""
  _check_embeddings(embeddings=embeddings)
  check_identities(labels)
  positive, negative = _masks(labels)
  k_pos, k_neg = jax.random.split(key)
  pick = lambda mask, k: jnp.argmax(jnp.where(mask, jax.random.uniform(k, mask.shape), -1.0), 1)
  p, n = pick(positive, k_pos), pick(negative, k_neg)
  pos = jnp.sum((embeddings - embeddings[p]) ** 2, -1)
  neg = jnp.sum((embeddings - embeddings[n]) ** 2, -1)
  losses = jnp.maximum(pos - neg + alpha, 0.0)
  return jnp.mean(losses), {"active_triplets": jnp.mean(losses > 0)}


def batch_hard_triplet_loss(embeddings, labels, alpha: float = 0.2):
  """Hermans et al. 2017: each anchor with its farthest positive and nearest negative;
  the mean over anchors. -> (loss, {"active_triplets": fraction of anchors with loss > 0})."""
  _check_embeddings(embeddings=embeddings)
  check_identities(labels)
  d = squared_distances(embeddings)
  positive, negative = _masks(labels)
  hardest_pos = jnp.max(jnp.where(positive, d, -jnp.inf), 1)
  hardest_neg = jnp.min(jnp.where(negative, d, jnp.inf), 1)
  has = jnp.any(positive, 1) & jnp.any(negative, 1)
  losses = jnp.where(has, jnp.maximum(hardest_pos - hardest_neg + alpha, 0.0), 0.0)
  count = jnp.maximum(jnp.sum(has), 1)
  return jnp.sum(losses) / count, {"active_triplets": jnp.sum(losses > 0) / count}


def semi_hard_triplet_loss(embeddings, labels, alpha: float = 0.2):
  """FaceNet's online semi-hard mining: for every (anchor, positive) pair the nearest
  negative farther than the positive (d(a,p) < d(a,n), so a semi-hard one whenever
  d(a,n) < d(a,p) + alpha exists); with no such negative, the hardest (nearest)
  negative. The mean over pairs. -> (loss, {"active_triplets", "semi_hard": fraction
  of pairs that found a negative farther than the positive})."""
  _check_embeddings(embeddings=embeddings)
  check_identities(labels)
  d = squared_distances(embeddings)
  positive, negative = _masks(labels)
  d_ap = d[:, :, None]  # [a, p, 1]
  d_an = d[:, None, :]  # [a, 1, n]
  farther = negative[:, None, :] & (d_an > d_ap)
  semi = jnp.min(jnp.where(farther, d_an, jnp.inf), 2)  # [a, p]
  hardest = jnp.min(jnp.where(negative, d, jnp.inf), 1)[:, None]
  found = jnp.any(farther, 2)
  chosen = jnp.where(found, semi, hardest)
  losses = jnp.where(positive, jnp.maximum(d - chosen + alpha, 0.0), 0.0)
  pairs = jnp.maximum(jnp.sum(positive), 1)
  return jnp.sum(losses) / pairs, {"active_triplets": jnp.sum(losses > 0) / pairs,
                                   "semi_hard": jnp.sum(found & positive) / pairs}


def pair_logits(f_i, f_j, weights, bias):
  """The Siamese binary classifier's logit: sum_k w_k |f(x_i)_k - f(x_j)_k| + b.
  `f_i`, `f_j` `[N, D]`, `weights [D]`, scalar `bias` -> `[N]`; sigmoid: P(same)."""
  _check_embeddings(f_i=f_i, f_j=f_j)
  if jnp.shape(weights) != (f_i.shape[-1],):
    raise fail("weights", f"shape ({f_i.shape[-1]},) to match the embeddings",
               f"shape {jnp.shape(weights)}")
  return jnp.abs(f_i - f_j) @ weights + bias


def binary_pair_loss(logits, same):
  """Binary cross-entropy of pair logits `[N]` against `same` (1: one identity) `[N]`,
  averaged. -> (loss, {"pair_accuracy"})."""
  same = same.astype(jnp.float32)
  loss = jnp.mean(same * jax.nn.softplus(-logits) + (1 - same) * jax.nn.softplus(logits))
  return loss, {"pair_accuracy": jnp.mean((logits > 0) == (same > 0))}


MINING = {"random": random_triplet_loss, "batch_all": batch_all_triplet_loss,
          "batch_hard": batch_hard_triplet_loss, "semi_hard": semi_hard_triplet_loss}
