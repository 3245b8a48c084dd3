"""Faster R-CNN (`cnn_lab.models.detection.FasterRCNN`): the model samples anchors and
RoIs against the batch's objects (`train_inputs`) from the step's `sampling` stream,
the loss adds the RPN's and the second stage's terms, detection is per-class NMS over
refined proposals."""

from __future__ import annotations

import dataclasses

import jax
import ml_collections

from cnn_lab.detection import rcnn
from cnn_lab.train.tasks.detectors import Detector


@dataclasses.dataclass(frozen=True)
class TwoStageDetection(Detector):
  """Config: `two_stage` (its `loss` is `weights` here; `postprocess` decodes with the
  RoI head's `roi.box_weights`)."""
  num_classes: int = 8
  max_objects: int = 4
  rpn: rcnn.RPNSettings = rcnn.RPNSettings()
  roi: rcnn.RoISettings = rcnn.RoISettings()
  weights: rcnn.LossWeights = rcnn.LossWeights()
  postprocess: rcnn.PostProcess = rcnn.PostProcess()
  horizontal_flip: bool = True
  vertical_flip: bool = True
  name = "two_stage"
  section = "two_stage"

  @classmethod
  def defaults(cls) -> dict:
    values = super().defaults()
    del values["two_stage"]["postprocess"]["box_weights"]  # always the RoI head's
    return values

  @classmethod
  def from_config(cls, config: ml_collections.ConfigDict, num_classes: int):
    task = super().from_config(config, num_classes)
    postprocess = dataclasses.replace(task.postprocess, box_weights=task.roi.box_weights)
    return dataclasses.replace(task, postprocess=postprocess)

  def model_kwargs(self) -> dict:
    return {"rpn": self.rpn, "roi": self.roi}

  def train_inputs(self, batch: dict) -> dict:
    return {"targets": (batch["boxes"], batch["classes"])}

  def loss(self, outputs, batch: dict, key=None):
    del batch, key  # the model's outputs carry their sampled targets
    loss, terms = rcnn.faster_rcnn_loss(outputs, self.weights)
    return loss, {"loss": loss, **terms}

  def predict(self, outputs) -> dict:
    """Inference outputs -> batched fixed-size detections (see `rcnn.PostProcess`)."""
    return jax.vmap(self.postprocess)(outputs["proposals"], outputs["proposal_valid"],
                                      outputs["class_logits"], outputs["box_deltas"])


TASK = TwoStageDetection
