"""Training tasks: what a batch means, how it is augmented, its loss and its metrics.

The launcher picks one by `config.task`; steps and loop are shared by all tasks.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import ml_collections

from cnn_lab.data.augment import random_affine
from cnn_lab.losses import softmax_cross_entropy, softmax_cross_entropy_per_example
from cnn_lab.ops._checks import fail


@dataclasses.dataclass(frozen=True)
class Classification:
  """Images `[N, H, W, C]` and int labels `[N]`; logits `[N, K]`."""
  label_smoothing: float = 0.0
  aux_weight: float = 0.3  # GoogLeNet's auxiliary classifiers (Szegedy et al. 2014)
  max_rotation: float = 0.0
  max_scale: float = 0.0
  max_shift: float = 0.0
  fill: float = 0.0

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

  def eval_sums(self, logits, batch: dict) -> dict:
    """Per-batch sums over unmasked examples, to be added over the whole eval set."""
    mask = batch["mask"].astype(jnp.float32)
    per_example = softmax_cross_entropy_per_example(logits, batch["label"])
    correct = (jnp.argmax(logits, -1) == batch["label"]).astype(jnp.float32)
    return {"count": jnp.sum(mask), "loss": jnp.sum(per_example * mask),
            "correct": jnp.sum(correct * mask)}


TASKS = {"classification": Classification}


def make_task(config: ml_collections.ConfigDict):
  if config.task not in TASKS:
    raise fail("task", f"one of {sorted(TASKS)}", config.task)
  if config.task == "classification":
    return Classification(label_smoothing=config.loss.label_smoothing, **config.augment)
  raise AssertionError(config.task)
