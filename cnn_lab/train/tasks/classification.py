"""Classification: images `[N, H, W, C]` and int labels `[N]`; logits `[N, K]`."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import jax
import jax.numpy as jnp
import ml_collections

from cnn_lab.data.augment import random_affine, random_flips
from cnn_lab.errors import fail
from cnn_lab.eval import evaluate_classification
from cnn_lab.losses import softmax_cross_entropy, softmax_cross_entropy_per_example
from cnn_lab.train.tasks.base import TaskBase, build_settings

AUGMENT = ("max_rotation", "max_scale", "max_shift", "fill", "hflip", "vflip")


@dataclasses.dataclass(frozen=True)
class Classification(TaskBase):
  """Softmax cross-entropy (label smoothing; GoogLeNet's auxiliary heads weighted by
  `aux_weight`, Szegedy et al. 2014) and on-device random flips and affine jitter.

  Config: `loss` (label_smoothing, aux_weight) and `augment` (max_rotation in degrees,
  max_scale and max_shift as fractions / pixels, fill: the background value; hflip,
  vflip: mirror each image left-right / up-down with probability 1/2, exact where the
  classes are mirror-symmetric, as `shapes`' are and digits are not)."""
  label_smoothing: float = 0.0
  aux_weight: float = 0.3
  max_rotation: float = 0.0
  max_scale: float = 0.0
  max_shift: float = 0.0
  fill: float = 0.0
  hflip: bool = False
  vflip: bool = False
  name = "classification"
  section = "loss"
  keys = ("image", "label")
  headline = "accuracy"

  @classmethod
  def defaults(cls) -> dict:
    values = super().defaults()["loss"]
    return {"loss": {k: v for k, v in values.items() if k not in AUGMENT},
            "augment": {k: values[k] for k in AUGMENT}}

  @classmethod
  def from_config(cls, config: ml_collections.ConfigDict, num_classes: int):
    del num_classes
    values = {}
    for section, allowed in cls.defaults().items():
      given = config[section].to_dict() if section in config else {}
      for key in given:
        if key not in allowed:
          raise fail(f"{section}.{key}", f"a key of {section}: {sorted(allowed)}", key)
      values.update(given)
    return build_settings(cls, values, "loss")

  def augment(self, batch: dict, key) -> dict:
    images = batch["image"]
    if self.hflip or self.vflip:
      key, flip_key = jax.random.split(key)
      images = random_flips(images, flip_key, horizontal=self.hflip, vertical=self.vflip)[0]
    if self.max_rotation or self.max_scale or self.max_shift:
      images = random_affine(images, key, max_rotation=self.max_rotation,
                             max_scale=self.max_scale, max_shift=self.max_shift,
                             fill=self.fill)
    return {**batch, "image": images}

  def loss(self, outputs, batch: dict, key=None):
    """-> (scalar loss, {name: scalar}) for a training batch.

    `outputs` is logits `[N, K]`, or `(logits, *aux_logits)` from a model with
    auxiliary heads, whose losses are added with weight `aux_weight`.
    """
    del key
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


TASK = Classification
