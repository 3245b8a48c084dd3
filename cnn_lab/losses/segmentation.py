"""Per-pixel losses for semantic segmentation."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def pixel_cross_entropy(logits, labels, *, class_weights=None, mask=None):
  """Mean per-pixel softmax cross-entropy from logits.

  Args:
    logits: `[N, H, W, K]`. labels: int `[N, H, W]` in [0, K).
    class_weights: optional `[K]`; each pixel's loss is scaled by its true class's
      weight and the mean is taken over the weights (as PyTorch's weighted mean).
    mask: optional bool `[N]` or `[N, H, W]`; pixels outside it do not count.
  Returns: a scalar (0 when nothing counts).
  """
  log_probs = jax.nn.log_softmax(logits.astype(jnp.float32))
  per_pixel = -jnp.take_along_axis(log_probs, labels[..., None], -1)[..., 0]
  weight = jnp.ones_like(per_pixel) if class_weights is None else \
      jnp.asarray(class_weights, jnp.float32)[labels]
  if mask is not None:
    weight = weight * jnp.broadcast_to(mask.reshape(mask.shape + (1,) * (3 - mask.ndim)),
                                       per_pixel.shape)
  return jnp.sum(per_pixel * weight) / jnp.maximum(jnp.sum(weight), 1e-12)


def dice_loss(logits, labels, *, eps: float = 1.0):
  """Soft Dice loss, 1 - mean over classes of (2 |P n Y| + eps) / (|P| + |Y| + eps),
  with P the softmax probabilities and Y the one-hot labels, summed over the batch."""
  probs = jax.nn.softmax(logits.astype(jnp.float32))
  onehot = jax.nn.one_hot(labels, logits.shape[-1])
  inter = jnp.sum(probs * onehot, (0, 1, 2))
  total = jnp.sum(probs, (0, 1, 2)) + jnp.sum(onehot, (0, 1, 2))
  return 1.0 - jnp.mean((2.0 * inter + eps) / (total + eps))
