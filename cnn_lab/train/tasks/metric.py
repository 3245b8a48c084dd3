"""Metric learning: embeddings of identity-labelled images (FaceNet, Siamese pairs)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import jax
import numpy as np

from cnn_lab.data.augment import random_flips
from cnn_lab.data.order import IdentityBatches, PairBatches
from cnn_lab.errors import fail
from cnn_lab.eval.verification import evaluate_faces, squared_distances
from cnn_lab.losses import metric
from cnn_lab.train.tasks.base import TaskBase

OBJECTIVES = ("random", "batch_all", "batch_hard", "semi_hard", "binary")


@dataclasses.dataclass(frozen=True)
class MetricLearning(TaskBase):
  """Embeddings from `cnn_lab.models.embedding.Embedder`. Config: `metric`.

  `objective`: the triplet loss with `random` triplets (drawn from the step's `mining`
  stream), `batch_all`, `batch_hard` or `semi_hard` online mining over P identities x
  K images batches (`IdentityBatches`, P = `identities_per_batch`), or `binary`: the
  Siamese pair classifier with binary cross-entropy over labelled pairs
  (`PairBatches`). Evaluation (`evaluate_faces`) on identities never trained on:
  thresholds chosen on `validation_identities`, verification and one-shot
  identification on `gallery_identities`, rejection of `stranger_identities`.
  """
  objective: str = "semi_hard"
  alpha: float = 0.2
  identities_per_batch: int = 16
  horizontal_flip: bool = True
  validation_identities: tuple = (500, 600)
  gallery_identities: tuple = (600, 700)
  stranger_identities: tuple = (700, 800)
  name = "metric"
  section = "metric"
  keys = ("image", "label")
  headline = "verification_accuracy"

  def __post_init__(self):
    if self.objective not in OBJECTIVES:
      raise fail("metric.objective", f"one of {OBJECTIVES}", self.objective)

  def batch_order(self, train_source, global_batch: int, seed: int):
    labels = [train_source[i]["label"] for i in range(len(train_source))]
    if self.objective == "binary":
      return PairBatches(labels, global_batch, seed)
    if global_batch % self.identities_per_batch:
      raise fail("batch_size", f"a multiple of metric.identities_per_batch="
                 f"{self.identities_per_batch} (P identities x K images)", global_batch)
    return IdentityBatches(labels, self.identities_per_batch,
                           global_batch // self.identities_per_batch, seed)

  def augment(self, batch: dict, key) -> dict:
    if not self.horizontal_flip:
      return batch
    image, _, _ = random_flips(batch["image"], key, horizontal=True, vertical=False)
    return {**batch, "image": image}

  def loss(self, outputs, batch: dict, key=None):
    """`key`: the step's `mining` stream (only `random` triplets draw from it)."""
    e, labels = outputs["embedding"], batch["label"]
    if self.objective == "binary":
      logits = metric.pair_logits(e[0::2], e[1::2], outputs["pair_weights"],
                                  outputs["pair_bias"])
      loss, terms = metric.binary_pair_loss(logits, labels[0::2] == labels[1::2])
    elif self.objective == "random":
      loss, terms = metric.random_triplet_loss(e, labels, self.alpha, key=key)
    else:
      loss, terms = metric.MINING[self.objective](e, labels, self.alpha)
    return loss, {"loss": loss, **terms}

  def eval_batch(self, outputs, batch: dict) -> dict:
    return {**outputs, "label": batch["label"], "mask": batch["mask"]}

  def distance(self, weights=None, bias=None):
    """The task's dissimilarity of embeddings `[A, D]`, `[B, D]` -> `[A, B]`: squared
    Euclidean, or minus the pair classifier's logit for `binary`."""
    if self.objective != "binary":
      return squared_distances
    w, b = np.asarray(weights, np.float64), float(bias)

    def minus_logit(a, c, rows: int = 64):  # in blocks: [rows, B, D] at a time
      a, c = np.asarray(a, np.float64), np.asarray(c, np.float64)
      return np.concatenate([-(np.abs(a[i:i + rows, None] - c[None]) @ w + b)
                             for i in range(0, len(a), rows)]) if len(a) else \
          np.zeros((0, len(c)))
    return minus_logit

  def evaluate(self, eval_step, state, batches) -> Iterator[tuple[str, float]]:
    embeddings, labels, out = [], [], None
    for batch in batches:
      out = jax.device_get(eval_step(state, batch))
      embeddings.append(out["embedding"][out["mask"]])
      labels.append(out["label"][out["mask"]])
    distance = self.distance(out["pair_weights"], out["pair_bias"])
    for name, value in evaluate_faces(np.concatenate(embeddings), np.concatenate(labels),
                                      validation=self.validation_identities,
                                      gallery=self.gallery_identities,
                                      strangers=self.stranger_identities, distance=distance):
      yield f"eval/{name}", value


TASK = MetricLearning
