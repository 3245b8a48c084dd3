"""Local response normalisation (Krizhevsky et al. 2012, section 3.3)."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jax import lax

from cnn_lab.errors import fail


def local_response_norm(x, depth_radius: int = 2, bias: float = 2.0, alpha: float = 1e-4,
                        beta: float = 0.75):
  """b_c = a_c / (bias + alpha * sum_{j=c-r}^{c+r} a_j^2) ** beta, over channels.

  The AlexNet paper's formula: n = 2r + 1 neighbouring channels, the sum is
  *not* divided by n (as in TensorFlow's `local_response_normalization`, unlike
  PyTorch's `LocalResponseNorm`, which divides alpha by n). AlexNet: r=2, k=2.

  Args:
    x: `[N, ..., C]`; normalised along the last axis.
  Returns:
    same shape as x.
  """
  if not isinstance(depth_radius, int) or depth_radius < 0:
    raise fail("depth_radius", "an int >= 0", depth_radius)
  if x.ndim < 2:
    raise fail("x.ndim", ">= 2 ([N, ..., C])", x.ndim)
  window = (1,) * (x.ndim - 1) + (2 * depth_radius + 1,)
  pads = ((0, 0),) * (x.ndim - 1) + ((depth_radius, depth_radius),)
  sq_sum = lax.reduce_window(jnp.square(x), np.array(0, x.dtype), lax.add, window,
                             (1,) * x.ndim, pads)
  return x / (bias + alpha * sq_sum) ** beta


__all__ = ["local_response_norm"]
