"""Training tasks: what a batch holds, how it is augmented, its loss and its evaluation.

The launcher picks one by `config.task`; steps and loop are shared by all tasks. A
task says which record fields it reads (`keys`, after `encode` has made them fixed
in shape), may fit itself to the training data (`setup`, e.g. YOLO's anchors), adds
constructor arguments to the model (`model_kwargs`) and, in training, call arguments
(`train_inputs`, e.g. the objects a two-stage detector samples its RoIs against), and
evaluates a whole split (`evaluate` yields `(name, value)`; `eval_batch` is what the
jitted eval step returns).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from cnn_lab.data.augment import random_affine, random_flips
from cnn_lab.data.pipeline import IdentityBatches, PadObjects, PairBatches, SegmentationTarget
from cnn_lab.detection import localization, rcnn, yolo
from cnn_lab.eval import evaluate_classification, evaluate_detections
from cnn_lab.eval.classification import sum_batches
from cnn_lab.eval.segmentation import confusion_matrix, segmentation_metrics
from cnn_lab.eval.verification import evaluate_faces, squared_distances
from cnn_lab.losses import (dice_loss, pixel_cross_entropy, softmax_cross_entropy,
                            softmax_cross_entropy_per_example)
from cnn_lab.losses import metric
from cnn_lab.ops._checks import fail


def _ratios(totals: dict, pairs: dict) -> Iterator[tuple[str, float]]:
  for name, (numerator, denominator) in pairs.items():
    yield f"eval/{name}", float(totals[numerator]) / max(float(totals[denominator]), 1.0)


class _Task:
  """Defaults every task shares: no record encoding, nothing fitted to the data, no extra
  model arguments, no augmentation."""

  def encode(self):
    return None

  def setup(self, train_source):
    del train_source
    return self

  def model_kwargs(self) -> dict:
    return {}

  def train_inputs(self, batch: dict) -> dict:
    del batch
    return {}

  def batch_order(self, train_source, global_batch: int, seed: int):
    """Which records make training batch i (None: a fresh shuffle every epoch)."""
    del train_source, global_batch, seed
    return None

  def augment(self, batch: dict, rng) -> dict:
    del rng
    return batch


@dataclasses.dataclass(frozen=True)
class Classification(_Task):
  """Images `[N, H, W, C]` and int labels `[N]`; logits `[N, K]`."""
  label_smoothing: float = 0.0
  aux_weight: float = 0.3  # GoogLeNet's auxiliary classifiers (Szegedy et al. 2014)
  max_rotation: float = 0.0
  max_scale: float = 0.0
  max_shift: float = 0.0
  fill: float = 0.0
  keys = ("image", "label")
  headline = "accuracy"

  def augment(self, batch: dict, rng) -> dict:
    if not (self.max_rotation or self.max_scale or self.max_shift):
      return batch
    images = random_affine(batch["image"], rng, max_rotation=self.max_rotation,
                           max_scale=self.max_scale, max_shift=self.max_shift, fill=self.fill)
    return {**batch, "image": images}

  def loss(self, outputs, batch: dict):
    """-> (scalar loss, {name: scalar}) for a training batch.

    `outputs` is logits `[N, K]`, or `(logits, *aux_logits)` from a model with
    auxiliary heads, whose losses are added with weight `aux_weight`.
    """
    logits, *aux = outputs if isinstance(outputs, tuple) else (outputs,)
    xent = lambda z: softmax_cross_entropy(z, batch["label"],
                                           label_smoothing=self.label_smoothing)
    loss = xent(logits) + self.aux_weight * sum(xent(z) for z in aux)
    accuracy = jnp.mean(jnp.argmax(logits, -1) == batch["label"])
    return loss, {"loss": loss, "accuracy": accuracy}

  def eval_batch(self, logits, batch: dict) -> dict:
    """Per-batch sums over unmasked examples, to be added over the whole eval set."""
    mask = batch["mask"].astype(jnp.float32)
    per_example = softmax_cross_entropy_per_example(logits, batch["label"])
    correct = (jnp.argmax(logits, -1) == batch["label"]).astype(jnp.float32)
    return {"count": jnp.sum(mask), "loss": jnp.sum(per_example * mask),
            "correct": jnp.sum(correct * mask)}

  def evaluate(self, eval_step, state, batches) -> Iterator[tuple[str, float]]:
    yield from evaluate_classification(eval_step, state, batches)


@dataclasses.dataclass(frozen=True)
class Localization(_Task):
  """One object or none per image: the course's `[pc, bx, by, bh, bw, c1..cK]` (+ landmarks).

  Batches hold `boxes [N, 1, 4]`, `classes [N, 1]` (-1: no object) and, with
  `num_landmarks`, `landmarks [N, 1, L, 2]` (see `PadObjects`).
  """
  num_classes: int = 8
  num_landmarks: int = 0
  box_weight: float = 5.0
  landmark_weight: float = 5.0
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

  def loss(self, outputs, batch: dict):
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
    yield from _ratios(totals, pairs)
    yield "eval/count", float(totals["count"])


class _Detector(_Task):
  """What YOLO and Faster R-CNN share: padded objects, flips that move the boxes, and
  evaluation of `detect`'s fixed-size detections with the VOC and COCO mAP."""
  keys = ("image", "boxes", "classes")
  headline = "voc_mAP50"

  def encode(self):
    return PadObjects(self.max_objects)

  def augment(self, batch: dict, rng) -> dict:
    if not (self.horizontal_flip or self.vertical_flip):
      return batch
    image, boxes, _ = random_flips(batch["image"], rng, boxes=batch["boxes"],
                                   horizontal=self.horizontal_flip,
                                   vertical=self.vertical_flip)
    return {**batch, "image": image, "boxes": boxes}

  def eval_batch(self, outputs, batch: dict) -> dict:
    return {"detections": self.detect(outputs), "boxes": batch["boxes"],
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


@dataclasses.dataclass(frozen=True)
class Detection(_Detector):
  """YOLOv2 on a grid: batches hold `boxes [N, M, 4]` and `classes [N, M]` (-1 pads)."""
  num_classes: int = 8
  max_objects: int = 4
  num_anchors: int = 5
  anchors: tuple = ()  # ((w, h), ...) as image fractions; () = k-means on the training boxes
  anchor_iou: float = 0.0  # mean IoU of training boxes with their best anchor (k-means)
  weights: yolo.YoloLossWeights = yolo.YoloLossWeights()
  postprocess: yolo.PostProcess = yolo.PostProcess()
  horizontal_flip: bool = True
  vertical_flip: bool = True

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

  def model_kwargs(self) -> dict:
    return {"num_anchors": self.num_anchors}

  def loss(self, outputs, batch: dict):
    anchors = jnp.asarray(self.anchors, jnp.float32)
    per_image = jax.vmap(yolo.yolo_loss, in_axes=(0, 0, 0, None, None))
    losses, terms = per_image(outputs, batch["boxes"], batch["classes"], anchors, self.weights)
    loss = jnp.mean(losses)
    return loss, {"loss": loss, **{k: jnp.mean(v) for k, v in terms.items()}}

  def detect(self, outputs) -> dict:
    """Raw `[N, S, S, B, 5 + K]` -> batched fixed-size detections (see `PostProcess`)."""
    anchors = jnp.asarray(self.anchors, jnp.float32)
    return jax.vmap(self.postprocess, in_axes=(0, None))(outputs, anchors)


@dataclasses.dataclass(frozen=True)
class TwoStageDetection(_Detector):
  """Faster R-CNN (`cnn_lab.models.detection.FasterRCNN`): the model samples anchors and
  RoIs against the batch's objects (`train_inputs`), the loss adds the RPN's and the
  second stage's terms, detection is per-class NMS over refined proposals."""
  num_classes: int = 8
  max_objects: int = 4
  rpn: rcnn.RPNSettings = rcnn.RPNSettings()
  roi: rcnn.RoISettings = rcnn.RoISettings()
  weights: rcnn.LossWeights = rcnn.LossWeights()
  postprocess: rcnn.PostProcess = rcnn.PostProcess()
  horizontal_flip: bool = True
  vertical_flip: bool = True

  def model_kwargs(self) -> dict:
    return {"rpn": self.rpn, "roi": self.roi}

  def train_inputs(self, batch: dict) -> dict:
    return {"targets": (batch["boxes"], batch["classes"])}

  def loss(self, outputs, batch: dict):
    del batch  # the model's outputs carry their sampled targets
    loss, terms = rcnn.faster_rcnn_loss(outputs, self.weights)
    return loss, {"loss": loss, **terms}

  def detect(self, outputs) -> dict:
    """Inference outputs -> batched fixed-size detections (see `rcnn.PostProcess`)."""
    return jax.vmap(self.postprocess)(outputs["proposals"], outputs["proposal_valid"],
                                      outputs["class_logits"], outputs["box_deltas"])


@dataclasses.dataclass(frozen=True)
class Segmentation(_Task):
  """Per-pixel classes: batches hold `segmentation` int32 `[N, H, W]`; logits `[N, H, W, K]`.

  Loss: per-pixel softmax cross-entropy (optionally class-weighted) plus
  `dice_weight` x soft Dice. Evaluation: one confusion matrix over the split.
  """
  num_classes: int
  mask_key: str = "mask"
  mask_offset: int = 0
  class_weights: tuple = ()
  dice_weight: float = 0.0
  horizontal_flip: bool = True
  vertical_flip: bool = False
  class_names: tuple = ()
  keys = ("image", "segmentation")
  headline = "mean_iou"

  def encode(self):
    return SegmentationTarget(self.num_classes, self.mask_key, self.mask_offset)

  def model_kwargs(self) -> dict:
    return {"num_classes": self.num_classes}

  def augment(self, batch: dict, rng) -> dict:
    if not (self.horizontal_flip or self.vertical_flip):
      return batch
    image, _, masks = random_flips(batch["image"], rng, masks=batch["segmentation"],
                                   horizontal=self.horizontal_flip,
                                   vertical=self.vertical_flip)
    return {**batch, "image": image, "segmentation": masks}

  def loss(self, logits, batch: dict):
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
    return {"confusion": confusion_matrix(jnp.argmax(logits, -1), labels, self.num_classes,
                                          mask),
            "loss": ce * pixels, "pixels": pixels, "count": jnp.sum(mask)}

  def evaluate(self, eval_step, state, batches) -> Iterator[tuple[str, float]]:
    totals = sum_batches(eval_step, state, batches)
    yield from _ratios(totals, {"loss": ("loss", "pixels")})
    for name, value in segmentation_metrics(totals["confusion"], self.class_names):
      yield f"eval/{name}", value
    yield "eval/count", float(totals["count"])


METRIC_OBJECTIVES = ("random", "batch_all", "batch_hard", "semi_hard", "binary")


@dataclasses.dataclass(frozen=True)
class MetricLearning(_Task):
  """Embeddings of identity-labelled images (`cnn_lab.models.embedding.Embedder`).

  `objective`: the triplet loss with `random` triplets, `batch_all`, `batch_hard` or
  `semi_hard` online mining over P identities x K images batches
  (`IdentityBatches`, P = `identities_per_batch`), or `binary`: the Siamese pair
  classifier with binary cross-entropy over labelled pairs (`PairBatches`).
  Evaluation (`evaluate_faces`) on identities never trained on: thresholds chosen
  on `validation_identities`, verification and one-shot identification on
  `gallery_identities`, rejection of `stranger_identities`.
  """
  objective: str = "semi_hard"
  alpha: float = 0.2
  identities_per_batch: int = 16
  horizontal_flip: bool = True
  validation_identities: tuple = (500, 600)
  gallery_identities: tuple = (600, 700)
  stranger_identities: tuple = (700, 800)
  keys = ("image", "label")
  headline = "verification_accuracy"

  def __post_init__(self):
    if self.objective not in METRIC_OBJECTIVES:
      raise fail("metric.objective", f"one of {METRIC_OBJECTIVES}", self.objective)

  def batch_order(self, train_source, global_batch: int, seed: int):
    labels = [train_source[i]["label"] for i in range(len(train_source))]
    if self.objective == "binary":
      return PairBatches(labels, global_batch, seed)
    if global_batch % self.identities_per_batch:
      raise fail("batch_size", f"a multiple of metric.identities_per_batch="
                 f"{self.identities_per_batch} (P identities x K images)", global_batch)
    return IdentityBatches(labels, self.identities_per_batch,
                           global_batch // self.identities_per_batch, seed)

  def augment(self, batch: dict, rng) -> dict:
    k_flip, k_mine = jax.random.split(rng)
    if self.horizontal_flip:
      image, _, _ = random_flips(batch["image"], k_flip, horizontal=True, vertical=False)
      batch = {**batch, "image": image}
    return {**batch, "mining_key": k_mine}  # random triplets draw from it

  def loss(self, outputs, batch: dict):
    e, labels = outputs["embedding"], batch["label"]
    if self.objective == "binary":
      logits = metric.pair_logits(e[0::2], e[1::2], outputs["pair_weights"],
                                  outputs["pair_bias"])
      loss, terms = metric.binary_pair_loss(logits, labels[0::2] == labels[1::2])
    elif self.objective == "random":
      loss, terms = metric.random_triplet_loss(e, labels, self.alpha, key=batch["mining_key"])
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


TASKS = {"classification": Classification, "localization": Localization,
         "detection": Detection, "two_stage": TwoStageDetection,
         "segmentation": Segmentation, "metric": MetricLearning}


def make_task(config: ml_collections.ConfigDict, num_classes: int):
  if config.task not in TASKS:
    raise fail("task", f"one of {sorted(TASKS)}", config.task)
  if config.task == "classification":
    return Classification(label_smoothing=config.loss.label_smoothing, **config.augment)
  if config.task == "localization":
    return Localization(num_classes=num_classes, **config.localization)
  if config.task == "segmentation":
    seg = config.segmentation.to_dict()
    return Segmentation(**{**seg, "class_weights": tuple(seg["class_weights"]),
                           "class_names": tuple(seg["class_names"])})
  if config.task == "two_stage":
    return _two_stage(config.two_stage.to_dict(), num_classes)
  if config.task == "metric":
    m = config.metric.to_dict()
    return MetricLearning(**{k: tuple(v) if isinstance(v, list) else v for k, v in m.items()})
  d = config.detection.to_dict()
  return Detection(
      num_classes=num_classes, max_objects=d["max_objects"], num_anchors=d["num_anchors"],
      anchors=tuple(map(tuple, d["anchors"])), weights=yolo.YoloLossWeights(**d["loss"]),
      postprocess=yolo.PostProcess(**d["postprocess"]),
      horizontal_flip=d["horizontal_flip"], vertical_flip=d["vertical_flip"])


def _two_stage(d: dict, num_classes: int) -> TwoStageDetection:
  roi = rcnn.RoISettings(**{**d["roi"], "box_weights": tuple(d["roi"]["box_weights"])})
  return TwoStageDetection(
      num_classes=num_classes, max_objects=d["max_objects"], rpn=rcnn.RPNSettings(**d["rpn"]),
      roi=roi, weights=rcnn.LossWeights(**d["loss"]),
      postprocess=rcnn.PostProcess(**d["postprocess"], box_weights=roi.box_weights),
      horizontal_flip=d["horizontal_flip"], vertical_flip=d["vertical_flip"])
