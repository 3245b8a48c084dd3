"""Localization: one object or none per image, the course's `[pc, bx, by, bh, bw, c1..cK]`
(+ landmarks)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import jax
import jax.numpy as jnp

from cnn_lab.data.pipeline import PadObjects
from cnn_lab.detection import localization
from cnn_lab.eval.classification import sum_batches
from cnn_lab.train.tasks.base import TaskBase, ratios


@dataclasses.dataclass(frozen=True)
class Localization(TaskBase):
  """Batches hold `boxes [N, 1, 4]`, `classes [N, 1]` (-1: no object) and, with
  `num_landmarks`, `landmarks [N, 1, L, 2]` (see `PadObjects`). Config: `localization`."""
  num_classes: int = 8
  num_landmarks: int = 0
  box_weight: float = 5.0
  landmark_weight: float = 5.0
  name = "localization"
  section = "localization"
  headline = "iou50_accuracy"

  @property
  def keys(self):
    return ("image", "boxes", "classes") + (("landmarks",) if self.num_landmarks else ())

  def encode(self):
    return PadObjects(1, self.num_landmarks)

  def model_kwargs(self) -> dict:
    return {"num_landmarks": self.num_landmarks}

  def _targets(self, batch):
    return localization.Targets(batch["boxes"][:, 0], batch["classes"][:, 0],
                                batch["landmarks"][:, 0] if self.num_landmarks else None)

  def loss(self, outputs, batch: dict, key=None):
    del key
    terms = localization.localization_loss(outputs, self._targets(batch), self.num_classes,
                                           self.num_landmarks)
    loss = (terms["presence"] + self.box_weight * terms["box"] + terms["classes"] +
            self.landmark_weight * terms.get("landmarks", 0.0))
    return loss, {"loss": loss, **terms}

  def eval_batch(self, outputs, batch: dict) -> dict:
    return localization.eval_sums(outputs, self._targets(batch), batch["mask"],
                                  self.num_classes, self.num_landmarks)

  def evaluate(self, eval_step, state, batches) -> Iterator[tuple[str, float]]:
    totals = sum_batches(eval_step, state, batches)
    pairs = {"presence_accuracy": ("presence_correct", "count"),
             "class_accuracy": ("class_correct", "objects"),
             "iou50_accuracy": ("iou50", "objects"),
             "localization_accuracy": ("iou50_and_class", "objects"),
             "mean_iou": ("iou", "objects")}
    if self.num_landmarks:
      pairs["landmark_nme"] = ("nme", "objects")
    yield from ratios(totals, pairs)
    yield "eval/count", float(totals["count"])

  def predict(self, outputs) -> dict:
    """Outputs `[N, 5 + K (+ 2L)]` -> {"boxes" `[N, 1, 4]`, "scores" `[N, 1]`, "classes"
    `[N, 1]` [, "landmarks" `[N, L, 2]`]}, one candidate object per image."""
    p = localization.split_outputs(outputs, self.num_classes, self.num_landmarks)
    out = {"boxes": p.boxes[:, None], "scores": jax.nn.sigmoid(p.presence_logit)[:, None],
           "classes": jnp.argmax(p.class_logits, -1)[:, None]}
    if p.landmarks is not None:
      out["landmarks"] = p.landmarks
    return out


TASK = Localization
