"""XLA's convolution on CPU, around a slow path of XLA:CPU's.

XLA:CPU runs a convolution whose kernel is larger than its output along some spatial dim
(a 3x3 "SAME" convolution on a 2x2 map, a 5x5 on 4x4) 20-300x below its usual rate.
Measured on 2 cores, batch 64, 512 -> 512 channels, forward: 3x3 on 2x2 624 ms (on 4x4:
16 ms); 5x5 on 4x4 9.2 s (on 6x6: 0.24 s). VGG's last stage at 32x32 input,
ResNet-18's at 64x64 and GoogLeNet's inception (4) at 32x32 are such layers: VGG-11's
training step on `shapes` was 2.55 s, 2.4 s of it in its two 2x2 convolutions.

There, `conv_general` computes the same convolution as one matmul over the taps that
see the input (`taps_matmul`; 3x3 on 2x2: 1,224 -> 16 ms forward and backward). Other
convolutions, and every one off CPU, are `lax.conv_general_dilated` unchanged.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
from jax import lax


def conv_general(x, w, strides, padding, dilation, dimension_numbers, groups: int):
  """`lax.conv_general_dilated(x, w, ...)` for `x: [N, *spatial, C]` (batch first) and
  `w: [*K, C / groups, O]`; on CPU, a kernel wider than the output (groups = 1) done as
  one matmul (`taps_matmul`)."""
  padding = tuple(map(tuple, padding))
  if groups == 1 and jax.default_backend() == "cpu" and window_exceeds_output(
      x.shape[1:-1], w.shape[:-2], strides, padding, dilation):
    return taps_matmul(x, w, strides, padding, dilation)
  return lax.conv_general_dilated(x, w, tuple(strides), padding, rhs_dilation=tuple(dilation),
                                  dimension_numbers=dimension_numbers,
                                  feature_group_count=groups)


def _out_size(n: int, k: int, s: int, pad: tuple[int, int], d: int) -> int:
  return (n + pad[0] + pad[1] - (k - 1) * d - 1) // s + 1


def window_exceeds_output(in_sizes, window, strides, padding, dilation) -> bool:
  """Whether some spatial dim's output is smaller than the kernel: a 3x3 "SAME"
  convolution on a 2x2 map, a 5x5 on 4x4. XLA:CPU runs these 20-300x below its usual
  rate (2 cores, batch 64, 512 -> 512 channels: 3x3 on 2x2 624 ms, on 4x4 16 ms; 5x5 on
  4x4 9.2 s, on 6x6 0.24 s): VGG's last stage at 32x32 input, ResNet-18's at 64x64."""
  return any(_out_size(n, k, s, p, d) < k for n, k, s, p, d
             in zip(in_sizes, window, strides, padding, dilation))


def taps_matmul(x, w, strides, padding, dilation):
  """The convolution (groups = 1) as one matmul: the strided view of the padded input
  under each kernel tap that sees any input (taps over padding alone are skipped),
  side by side along the channels, times the kernel's matching rows.
  `x: [N, *spatial, C]`, `w: [*K, C, O]` -> `[N, *out, O]`."""
  window = w.shape[:-2]
  sizes = x.shape[1:-1]
  out = [_out_size(n, k, s, p, d) for n, k, s, p, d
         in zip(sizes, window, strides, padding, dilation)]
  xp = jnp.pad(x, ((0, 0), *padding, (0, 0)))
  views, rows = [], []
  for tap in itertools.product(*(range(k) for k in window)):
    start = [t * d for t, d in zip(tap, dilation)]
    last = [b + (o - 1) * s for b, o, s in zip(start, out, strides)]
    if any(hi < p[0] or lo >= p[0] + n for lo, hi, p, n in zip(start, last, padding, sizes)):
      continue  # this tap reads padding only, for every output position
    views.append(lax.slice(xp, (0, *start, 0), (x.shape[0], *[e + 1 for e in last],
                                                  x.shape[-1]), (1, *strides, 1)))
    rows.append(w[tap])
  if not views:  # the padding is wider than the kernel's reach: zeros
    return jnp.zeros((x.shape[0], *out, w.shape[-1]), jnp.result_type(x, w))
  patches = jnp.concatenate(views, -1) if len(views) > 1 else views[0]
  return jnp.dot(patches, jnp.concatenate(rows, 0) if len(rows) > 1 else rows[0],
                 preferred_element_type=jnp.result_type(x, w))
