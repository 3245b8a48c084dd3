"""Local response normalisation (Krizhevsky et al. 2012, section 3.3)."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jax import lax

from cnn_lab.errors import fail


def local_response_norm(x, depth_radius: int = 2, bias: float = 2.0, alpha: float = 1e-4,
                        beta: float = 0.75, *, impl: str = "xla"):
  """b_c = a_c / (bias + alpha * sum_{j=c-r}^{c+r} a_j^2) ** beta, over channels.

  The AlexNet paper's formula: n = 2r + 1 neighbouring channels, the sum is
  *not* divided by n (as in TensorFlow's `local_response_normalization`, unlike
  PyTorch's `LocalResponseNorm`, which divides alpha by n: PyTorch's (size=n, alpha=a)
  is ours with depth_radius=(n - 1) // 2 and alpha=a / n, for odd n). AlexNet: r=2, k=2.

  Args:
    x: `[N, ..., C]`; normalised along the last axis.
    impl: "xla" (`lax.reduce_window` over channels) or "scratch" (the sum of the
      2r + 1 channel-shifted squares, written out).
  Returns:
    same shape as x.
  """
  if impl not in ("xla", "scratch"):
    raise fail("impl", "one of ('xla', 'scratch')", impl)
  if not isinstance(depth_radius, int) or depth_radius < 0:
    raise fail("depth_radius", "an int >= 0", depth_radius)
  if x.ndim < 2:
    raise fail("x.ndim", ">= 2 ([N, ..., C])", x.ndim)
  r = depth_radius
  pads = ((0, 0),) * (x.ndim - 1) + ((r, r),)
  if impl == "xla":
    window = (1,) * (x.ndim - 1) + (2 * r + 1,)
    sq_sum = lax.reduce_window(jnp.square(x), np.array(0, x.dtype), lax.add, window,
                               (1,) * x.ndim, pads)
  else:
    padded, channels = jnp.pad(jnp.square(x), pads), x.shape[-1]
    sq_sum = sum(padded[..., j:j + channels] for j in range(2 * r + 1))
  return x / (bias + alpha * sq_sum) ** beta


__all__ = ["local_response_norm"]
