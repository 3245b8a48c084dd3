"""Semantic segmentation (U-Net): per-pixel classes."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import jax.numpy as jnp

from cnn_lab.data.augment import random_flips
from cnn_lab.data.pipeline import SegmentationTarget
from cnn_lab.errors import fail
from cnn_lab.eval.classification import confusion_matrix, sum_batches
from cnn_lab.eval.segmentation import segmentation_metrics
from cnn_lab.losses import dice_loss, pixel_cross_entropy
from cnn_lab.train.tasks.base import TaskBase, ratios


@dataclasses.dataclass(frozen=True)
class Segmentation(TaskBase):
  """Batches hold `segmentation` int32 `[N, H, W]`; logits `[N, H, W, K]`.

  Loss: per-pixel softmax cross-entropy (optionally class-weighted) plus
  `dice_weight` x soft Dice. Evaluation: one confusion matrix over the split.
  Config: `segmentation`; `num_classes` (the mask's, not the dataset's) is required.
  """
  num_classes: int
  mask_key: str = "mask"
  mask_offset: int = 0
  class_weights: tuple = ()
  dice_weight: float = 0.0
  horizontal_flip: bool = True
  vertical_flip: bool = False
  class_names: tuple = ()
  name = "segmentation"
  section = "segmentation"
  keys = ("image", "segmentation")
  headline = "mean_iou"

  @classmethod
  def defaults(cls) -> dict:
    return {"segmentation": {"num_classes": 0, **super().defaults()["segmentation"]}}

  @classmethod
  def from_config(cls, config, num_classes: int):
    del num_classes  # the mask's classes, from the section
    return super().from_config(config, None)

  def __post_init__(self):
    if not (isinstance(self.num_classes, int) and self.num_classes >= 2):
      raise fail("segmentation.num_classes", "the mask's number of classes, >= 2",
                 self.num_classes)

  def encode(self):
    return SegmentationTarget(self.num_classes, self.mask_key, self.mask_offset)

  def model_kwargs(self) -> dict:
    return {"num_classes": self.num_classes}

  def augment(self, batch: dict, key) -> dict:
    if not (self.horizontal_flip or self.vertical_flip):
      return batch
    image, _, masks = random_flips(batch["image"], key, masks=batch["segmentation"],
                                   horizontal=self.horizontal_flip,
                                   vertical=self.vertical_flip)
    return {**batch, "image": image, "segmentation": masks}

  def loss(self, logits, batch: dict, key=None):
    del key
    labels = batch["segmentation"]
    loss = pixel_cross_entropy(logits, labels, class_weights=self.class_weights or None)
    if self.dice_weight:
      loss = loss + self.dice_weight * dice_loss(logits, labels)
    accuracy = jnp.mean(jnp.argmax(logits, -1) == labels)
    return loss, {"loss": loss, "pixel_accuracy": accuracy}

  def eval_batch(self, logits, batch: dict) -> dict:
    """Confusion matrix and the (unweighted) cross-entropy summed over unmasked pixels."""
    labels, mask = batch["segmentation"], batch["mask"]
    pixels = jnp.sum(mask) * labels.shape[1] * labels.shape[2]
    ce = pixel_cross_entropy(logits, labels, mask=mask)
    return {"confusion": confusion_matrix(labels, jnp.argmax(logits, -1), self.num_classes,
                                          mask),
            "loss": ce * pixels, "pixels": pixels, "count": jnp.sum(mask)}

  def evaluate(self, eval_step, state, batches) -> Iterator[tuple[str, float]]:
    totals = sum_batches(eval_step, state, batches)
    yield from ratios(totals, {"loss": ("loss", "pixels")})
    for name, value in segmentation_metrics(totals["confusion"], self.class_names):
      yield f"eval/{name}", value
    yield "eval/count", float(totals["count"])


TASK = Segmentation
