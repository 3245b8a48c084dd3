"""Training a classifier on arrays already in memory, with the launcher's train step.

For experiments whose data is derived on the fly (windows or region crops cut from
scenes) rather than read from a TFDS dataset; anything with a dataset goes through
`experiments.train`.
"""

from __future__ import annotations

import jax
import numpy as np
import optax
from absl import logging
from flax import nnx

from cnn_lab.errors import fail
from cnn_lab.train.state import create_train_state
from cnn_lab.train.steps import make_train_step
from cnn_lab.train.tasks.classification import Classification


def fit_classifier(model: nnx.Module, images: np.ndarray, labels: np.ndarray, *, steps: int,
                   batch_size: int = 64, learning_rate: float = 2e-3, seed: int = 0,
                   log_every: int = 500) -> nnx.Module:
  """Adam with a cosine decay over `steps` random batches of (`images [N, H, W, C]`,
  int `labels [N]`) -> the trained model, in evaluation use (call with train=False)."""
  if len(images) != len(labels) or len(labels) == 0:
    raise fail("images, labels", "equally many examples, at least one",
               (len(images), len(labels)))
  tx = optax.adam(optax.cosine_decay_schedule(learning_rate, steps))
  graphdef, state = create_train_state(model, tx, jax.random.key(seed))
  step = jax.jit(make_train_step(graphdef, tx, Classification()), donate_argnums=0)
  rng = np.random.default_rng(seed)
  for i in range(steps):
    idx = rng.integers(0, len(labels), batch_size)
    state, metrics = step(state, {"image": images[idx], "label": labels[idx]})
    if (i + 1) % log_every == 0:
      logging.info("step %d  loss %.4f  accuracy %.3f", i + 1, float(metrics["loss"]),
                   float(metrics["accuracy"]))
  return nnx.merge(graphdef, state.params, state.batch_stats)
