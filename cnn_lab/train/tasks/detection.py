"""YOLOv2 on a grid, with anchor boxes from k-means of the training boxes."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from cnn_lab.detection import yolo
from cnn_lab.errors import fail
from cnn_lab.train.tasks.detectors import Detector


@dataclasses.dataclass(frozen=True)
class Detection(Detector):
  """Config: `detection` (its `loss` is `weights` here). `anchors` () are fitted: k-means
  on the training boxes (`setup`), saved with the run (`fitted`)."""
  num_classes: int = 8
  max_objects: int = 4
  num_anchors: int = 5
  anchors: tuple = ()  # ((w, h), ...) as image fractions; () = k-means on the training boxes
  anchor_iou: float = 0.0  # mean IoU of training boxes with their best anchor (k-means)
  weights: yolo.YoloLossWeights = yolo.YoloLossWeights()
  postprocess: yolo.PostProcess = yolo.PostProcess()
  horizontal_flip: bool = True
  vertical_flip: bool = True
  name = "detection"
  section = "detection"

  @classmethod
  def defaults(cls) -> dict:
    values = super().defaults()
    del values["detection"]["anchor_iou"]  # fitted, not a setting
    return values

  def setup(self, train_source) -> "Detection":
    """Fills `anchors` with YOLOv2's dimension clusters of the training boxes."""
    if self.anchors:
      if len(self.anchors) != self.num_anchors:
        raise fail("detection.anchors", f"{self.num_anchors} (w, h) pairs", self.anchors)
      return self
    boxes = np.concatenate([train_source[i]["boxes"][train_source[i]["classes"] >= 0]
                            for i in range(len(train_source))])
    anchors, mean_iou = yolo.kmeans_anchors(boxes[:, 2:] - boxes[:, :2], self.num_anchors)
    return dataclasses.replace(self, anchors=tuple(map(tuple, anchors.tolist())),
                               anchor_iou=mean_iou)

  def fitted(self) -> dict:
    return {"anchors": [list(a) for a in self.anchors], "anchor_iou": self.anchor_iou}

  def with_fitted(self, fitted: dict) -> "Detection":
    return dataclasses.replace(self, anchors=tuple(map(tuple, fitted["anchors"])),
                               anchor_iou=fitted["anchor_iou"])

  def model_kwargs(self) -> dict:
    return {"num_anchors": self.num_anchors}

  def loss(self, outputs, batch: dict, key=None):
    del key
    anchors = jnp.asarray(self.anchors, jnp.float32)
    per_image = jax.vmap(yolo.yolo_loss, in_axes=(0, 0, 0, None, None))
    losses, terms = per_image(outputs, batch["boxes"], batch["classes"], anchors, self.weights)
    loss = jnp.mean(losses)
    return loss, {"loss": loss, **{k: jnp.mean(v) for k, v in terms.items()}}

  def predict(self, outputs) -> dict:
    """Raw `[N, S, S, B, 5 + K]` -> batched fixed-size detections (see `PostProcess`)."""
    anchors = jnp.asarray(self.anchors, jnp.float32)
    return jax.vmap(self.postprocess, in_axes=(0, None))(outputs, anchors)


TASK = Detection
