"""Classification losses."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def softmax_cross_entropy_per_example(logits, labels, *, label_smoothing: float = 0.0):
  """Softmax cross-entropy of each example: logits `[N, K]`, int labels `[N]` -> `[N]`.

  label_smoothing: eps; the target is (1 - eps) one-hot + eps / K.
  """
  num_classes = logits.shape[-1]
  targets = jax.nn.one_hot(labels, num_classes)
  if label_smoothing:
    targets = targets * (1.0 - label_smoothing) + label_smoothing / num_classes
  return -jnp.sum(targets * jax.nn.log_softmax(logits.astype(jnp.float32)), axis=-1)


def softmax_cross_entropy(logits, labels, *, label_smoothing: float = 0.0, mask=None):
  """Mean softmax cross-entropy from logits.

  Args:
    logits: `[N, K]`. labels: int `[N]`.
    label_smoothing: eps; the target is (1 - eps) one-hot + eps / K.
    mask: optional bool `[N]`; masked-out examples do not count.
  Returns:
    scalar mean over counted examples (0 when none count).
  """
  per_example = softmax_cross_entropy_per_example(logits, labels,
                                                  label_smoothing=label_smoothing)
  if mask is None:
    return jnp.mean(per_example)
  mask = mask.astype(per_example.dtype)
  return jnp.sum(per_example * mask) / jnp.maximum(jnp.sum(mask), 1.0)
