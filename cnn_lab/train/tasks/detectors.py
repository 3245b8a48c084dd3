"""What YOLO and Faster R-CNN share: padded objects, flips that move the boxes, and
evaluation of `predict`'s fixed-size detections with the VOC and COCO mAP."""

from __future__ import annotations

from collections.abc import Iterator

import jax
import numpy as np

from cnn_lab.data.augment import random_flips
from cnn_lab.data.pipeline import PadObjects
from cnn_lab.eval import evaluate_detections
from cnn_lab.train.tasks.base import TaskBase


class Detector(TaskBase):
  """A base for detection tasks; subclasses define `predict` and the settings
  `num_classes`, `max_objects`, `horizontal_flip`, `vertical_flip`. Batches hold
  `boxes [N, M, 4]` and `classes [N, M]` (-1 pads)."""
  keys = ("image", "boxes", "classes")
  headline = "voc_mAP50"
  renamed = {"loss": "weights"}  # `loss` is the method

  def encode(self):
    return PadObjects(self.max_objects)

  def augment(self, batch: dict, key) -> dict:
    if not (self.horizontal_flip or self.vertical_flip):
      return batch
    image, boxes, _ = random_flips(batch["image"], key, boxes=batch["boxes"],
                                   horizontal=self.horizontal_flip,
                                   vertical=self.vertical_flip)
    return {**batch, "image": image, "boxes": boxes}

  def eval_batch(self, outputs, batch: dict) -> dict:
    return {"detections": self.predict(outputs), "boxes": batch["boxes"],
            "classes": batch["classes"], "mask": batch["mask"]}

  def evaluate(self, eval_step, state, batches) -> Iterator[tuple[str, float]]:
    detections, truth = [], []
    for batch in batches:
      out = jax.device_get(eval_step(state, batch))
      for i in np.flatnonzero(out["mask"]):
        n, found = int(out["detections"]["count"][i]), out["classes"][i] >= 0
        detections.append({k: out["detections"][k][i][:n]
                           for k in ("boxes", "scores", "classes")})
        truth.append({"boxes": out["boxes"][i][found], "classes": out["classes"][i][found]})
    for name, value in evaluate_detections(detections, truth, self.num_classes):
      yield f"eval/{name}", value
    yield "eval/count", float(len(truth))
