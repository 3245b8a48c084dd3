"""Convolution, depthwise/separable convolution and transpose convolution.

Layouts: activations `[N, *spatial, C]` (NHWC for 2D), kernels `[*K, I, O]` (HWIO).
The spatial rank (1D, 2D or 3D) is the kernel's rank minus two.

Every function has two implementations behind one signature:
  impl="xla":     lax.conv_general_dilated (the fast path; on CPU a kernel wider
                  than the output, or 1x1, is one matmul instead, `_taps_matmul`);
  impl="scratch": the definition, vectorised: for each kernel tap, the strided
                  window of the padded input times that tap's [I, O] matrix, all
                  taps summed. No Python loop over pixels, only over the K taps;
                  the batch is processed in cache-sized blocks (`batch_blocked`).

Output size along each spatial dim (n input, f filter, d dilation, s stride,
p_lo/p_hi padding):  floor((n + p_lo + p_hi - ((f - 1) * d + 1)) / s) + 1,
which is the course's floor((n + 2p - f) / s) + 1 for symmetric padding.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.custom_derivatives import SymbolicZero

from cnn_lab.errors import fail
from cnn_lab.ops._checks import (PaddingLike, check_input_rank, spatial_dims_of_kernel,
                                 tuple_arg)
from cnn_lab.ops.padding import check_window_fits, out_sizes, resolve_padding

IMPLS = ("xla", "scratch")


def _check_impl(impl: str) -> None:
  if impl not in IMPLS:
    raise fail("impl", f"one of {IMPLS}", impl)


def _dimension_numbers(ndim: int) -> tuple[str, str, str]:
  spatial = "DHW"[3 - ndim:]
  return (f"N{spatial}C", f"{spatial}IO", f"N{spatial}C")


def window_taps(xp, window: Sequence[int], strides: Sequence[int],
                dilation: Sequence[int], out: Sequence[int]):
  """Yields `(tap, view)` for every kernel tap of a strided, dilated window.

  `xp: [N, *spatial, C]` is the padded input; `view: [N, *out, C]` holds, at each
  output position, the input pixel that the kernel tap `tap` multiplies.
  """
  n, c = xp.shape[0], xp.shape[-1]
  for tap in itertools.product(*(range(f) for f in window)):
    start = [k * d for k, d in zip(tap, dilation)]
    limit = [b + (o - 1) * s + 1 for b, o, s in zip(start, out, strides)]
    yield tap, lax.slice(xp, (0, *start, 0), (n, *limit, c), (1, *strides, 1))


def _is_depthwise(x, w, groups: int) -> bool:
  """Each input channel convolved alone (groups == C_in): elementwise taps, no matmul."""
  return groups == x.shape[-1] and w.shape[-2] == 1


def _prepare(x, w, stride, padding, dilation, groups: int):
  """Checks arguments shared by conv-like ops; returns (ndim, strides, dilation, pairs, out)."""
  ndim = spatial_dims_of_kernel(w)
  check_input_rank(x, ndim)
  strides = tuple_arg(stride, ndim, "stride")
  dilation = tuple_arg(dilation, ndim, "dilation")
  if not isinstance(groups, int) or groups < 1 or x.shape[-1] % groups:
    raise fail("groups", f"an int >= 1 dividing the input channels {x.shape[-1]}", groups)
  if x.shape[-1] != w.shape[-2] * groups:
    raise fail("w.shape[-2] (input channels)",
               f"x.shape[-1] / groups = {x.shape[-1] // groups}", w.shape[-2])
  if w.shape[-1] % groups:
    raise fail("w.shape[-1] (output channels)", f"a multiple of groups={groups}", w.shape[-1])
  window = w.shape[:ndim]
  in_sizes = x.shape[1:-1]
  pairs = resolve_padding(padding, in_sizes, window, strides, dilation)
  check_window_fits(in_sizes, pairs, window, dilation)
  return ndim, strides, dilation, pairs, out_sizes(in_sizes, pairs, window, strides, dilation)


def conv(x, w, b=None, *, stride: int | Sequence[int] = 1, padding: PaddingLike = 0,
         dilation: int | Sequence[int] = 1, groups: int = 1, impl: str = "xla"):
  """N-D convolution (cross-correlation, as in deep learning).

  Args:
    x: `[N, *spatial, C_in]`.
    w: `[*K, C_in / groups, C_out]`.
    b: optional `[C_out]`.
    stride, dilation: int or one per spatial dim, >= 1.
    padding: see `cnn_lab.ops.padding`.
    groups: feature groups (AlexNet's two towers: 2; depthwise: C_in).
    impl: "xla" or "scratch".
  Returns:
    `[N, *out, C_out]` with out = floor((n + p_lo + p_hi - (f - 1) * d - 1) / s) + 1.
  """
  _check_impl(impl)
  ndim, strides, dilation, pairs, out = _prepare(x, w, stride, padding, dilation, groups)
  one_tap = math.prod(w.shape[:ndim]) == 1
  if impl == "xla" and groups == 1 and jax.default_backend() == "cpu" and (
      one_tap or any(o < f for o, f in zip(out, w.shape[:ndim]))):
    y = _taps_matmul(x, w, strides, dilation, pairs, out)  # XLA:CPU's slow paths, below
  elif impl == "xla":
    y = lax.conv_general_dilated(x, w, strides, pairs, rhs_dilation=dilation,
                                 dimension_numbers=_dimension_numbers(ndim),
                                 feature_group_count=groups)
  elif _is_depthwise(x, w, groups):
    y = _depthwise_taps(x, w, (strides, dilation, tuple(pairs), tuple(out)))
  elif one_tap:  # one matmul: nothing to block
    y = _conv_scratch(x, w, strides, dilation, pairs, out, groups)
  else:
    y = batch_blocked(lambda xb: _conv_scratch(xb, w, strides, dilation, pairs, out, groups),
                      x)
  return y if b is None else y + b


def matmul_channels(x, w, dtype=None):
  """`[..., K] @ [K, O] -> [..., O]` as one 2D matmul: XLA:CPU runs a dot with several
  batch-like dimensions 2-4x slower forward and backward (64x32x32x16 @ 16x96: 23 ms
  as an einsum, 6 ms reshaped to 2D)."""
  y = jnp.dot(x.reshape(-1, x.shape[-1]), w, preferred_element_type=dtype)
  return y.reshape(*x.shape[:-1], w.shape[-1])


def _taps_matmul(x, w, strides, dilation, pairs, out):
  """The convolution (groups = 1) as one matmul: the views of the taps that see the
  input (`window_taps`; a tap over padding alone is skipped), side by side along the
  channels, times the kernel's matching rows. `[N, *spatial, C]` -> `[N, *out, O]`.

  XLA:CPU's two slow convolutions (2 cores, batch 64, forward and backward):
  - a kernel larger than its output along some spatial dim (3x3 "SAME" on a 2x2 map,
    5x5 on 4x4), run 20-300x below the usual rate (512 -> 512 channels, forward: 3x3 on
    2x2 624 ms, on 4x4 16 ms; 5x5 on 4x4 9.2 s, on 6x6 0.24 s). VGG's last stage at
    32x32 and GoogLeNet's inception (4) and (5) are such layers: VGG-11's shapes step
    was 2.55 s, 2.4 s of it in its two 2x2 convolutions; here 3x3 on 2x2 with 512
    channels is 16 ms instead of 1,224;
  - a 1x1 kernel (MobileNets', EfficientNet's, the bottlenecks' and inceptions'
    pointwise layers), 2-8x slower than the same matmul: 64x32x32x16 -> 96 50 ms
    instead of 6, 64x16x16x144 -> 24 14 ms instead of 2.8.
  """
  sizes, ndim = x.shape[1:-1], len(strides)
  views, rows = [], []
  for tap, view in window_taps(jnp.pad(x, ((0, 0), *pairs, (0, 0))), w.shape[:ndim],
                               strides, dilation, out):
    first = [t * d for t, d in zip(tap, dilation)]  # padded rows read: first..last
    last = [f + (o - 1) * s for f, o, s in zip(first, out, strides)]
    if all(hi >= lo_pad and lo < lo_pad + n
           for lo, hi, (lo_pad, _), n in zip(first, last, pairs, sizes)):
      views.append(view)
      rows.append(w[tap])
  dtype = jnp.result_type(x, w)
  if not views:  # the padding is wider than the kernel's reach: zeros
    return jnp.zeros((x.shape[0], *out, w.shape[-1]), dtype)
  return matmul_channels(jnp.concatenate(views, -1), jnp.concatenate(rows, 0), dtype)


BLOCK_ELEMENTS = 1 << 18  # ~1 MB of float32 input per block: the taps' working set fits cache


@functools.partial(jax.custom_jvp, nondiff_argnums=(2,))
def _depthwise_taps(x, w, geometry):
  """The depthwise convolution's elementwise taps (`_conv_scratch`), whose kernel
  gradient is summed over cache-sized batch blocks. `geometry`: (strides, dilation,
  pairs, out).

  Forward and the input gradient are one fused pass over the taps, but the kernel
  gradient is one reduction over (N, *out) per tap, each reading a strided view of the
  whole batch: on 2 cores, 64x32x32x32 3x3 takes 25 ms for it against 1.5 ms forward.
  Summed block by block (the blocked term of the JVP below, whose transpose reverse mode
  takes) it is 10-13 ms; 64x16x16x144 27 -> 9-15 ms. The forward pass is not blocked: its
  taps fuse into one loop, and a scan over blocks costs 3x backward (179 vs 547 ms,
  64x32x32x96).
  """
  return _conv_scratch(x, w, *geometry, x.shape[-1])


def _depthwise_taps_jvp(geometry, primals, tangents):
  (x, w), (tx, tw) = primals, tangents
  taps = lambda x, w: _conv_scratch(x, w, *geometry, x.shape[-1])
  y = taps(x, w)
  terms = [] if isinstance(tx, SymbolicZero) else [taps(tx, w)]
  if not isinstance(tw, SymbolicZero):  # a frozen kernel costs no blocked pass
    out_elements = math.prod(geometry[3]) * w.shape[-1]
    # remat: the blocks' views are sliced again in the transposed scan, not stored
    terms.append(batch_blocked(jax.checkpoint(lambda xb: taps(xb, tw)), x,
                               per_example=out_elements))
  return y, sum(terms[1:], terms[0]) if terms else jnp.zeros_like(y)


_depthwise_taps.defjvp(_depthwise_taps_jvp, symbolic_zeros=True)


def batch_blocked(fn, x, block_elements: int = BLOCK_ELEMENTS, per_example: int = 0):
  """`fn(x)` computed a few examples at a time (`lax.map` over batch blocks).

  The tap-sum reads every input pixel once per kernel tap; on a whole batch each
  tap's view is a fresh tensor of main-memory size and the matmuls starve. In
  blocks of ~1 MB the views stay in cache (measured here: 71 -> 264 GFLOP/s
  forward for 64x32x32x64 -> 64, 3x3). The block is the largest divisor of N
  whose input (or `per_example` elements an example) fits `block_elements`.
  """
  n = x.shape[0]
  per_example = max(1, per_example or int(np.prod(x.shape[1:])))
  block = max(1, min(n, block_elements // per_example))
  while n % block:
    block -= 1
  if block == n:
    return fn(x)
  y = lax.map(fn, x.reshape(n // block, block, *x.shape[1:]))
  return y.reshape(n, *y.shape[2:])


def _conv_scratch(x, w, strides, dilation, pairs, out, groups):
  ndim = len(strides)
  xp = jnp.pad(x, ((0, 0), *pairs, (0, 0)))
  c_in, c_out = x.shape[-1], w.shape[-1]
  depthwise = _is_depthwise(x, w, groups)
  y = None
  for tap, view in window_taps(xp, w.shape[:ndim], strides, dilation, out):
    w_tap = w[tap]  # [C_in / groups, C_out]
    if groups == 1:
      term = matmul_channels(view, w_tap, jnp.result_type(x, w))
    elif depthwise:  # each input channel times its own `multiplier` filters
      term = (view[..., None] * w_tap.reshape(c_in, c_out // c_in)).reshape(*view.shape[:-1],
                                                                            c_out)
    else:
      grouped = view.reshape(*view.shape[:-1], groups, c_in // groups)
      w_g = w_tap.reshape(c_in // groups, groups, c_out // groups)
      term = jnp.einsum("...gi,igo->...go", grouped, w_g).reshape(*view.shape[:-1], c_out)
    y = term if y is None else y + term
  return y


def depthwise_conv(x, w, b=None, *, stride=1, padding: PaddingLike = 0, dilation=1,
                   impl: str = "xla"):
  """Depthwise convolution: each input channel convolved with its own filters.

  Args:
    x: `[N, *spatial, C]`.
    w: `[*K, C, M]` (Keras' DepthwiseConv layout; M is the depth multiplier).
  Returns:
    `[N, *out, C * M]`, output channel `c * M + m` from input channel `c`.
  """
  ndim = spatial_dims_of_kernel(w)
  check_input_rank(x, ndim)
  if w.shape[-2] != x.shape[-1]:
    raise fail("w.shape[-2] (channels)", f"x.shape[-1] = {x.shape[-1]}", w.shape[-2])
  grouped = w.reshape(*w.shape[:ndim], 1, w.shape[-2] * w.shape[-1])
  return conv(x, grouped, b, stride=stride, padding=padding, dilation=dilation,
              groups=x.shape[-1], impl=impl)


def separable_conv(x, depthwise_w, pointwise_w, b=None, *, stride=1,
                   padding: PaddingLike = 0, dilation=1, impl: str = "xla"):
  """Depthwise-separable convolution: depthwise `[*K, C, M]`, then 1x1 `[*1, C*M, O]`.

  Costs K*C*M + C*M*O multiplies per output pixel instead of K*C*O.
  Returns `[N, *out, O]`.
  """
  y = depthwise_conv(x, depthwise_w, stride=stride, padding=padding, dilation=dilation,
                     impl=impl)
  ndim = x.ndim - 2
  if pointwise_w.ndim != ndim + 2 or any(k != 1 for k in pointwise_w.shape[:ndim]):
    raise fail("pointwise_w.shape", f"[{', '.join(['1'] * ndim)}, C*M, O]", pointwise_w.shape)
  return conv(y, pointwise_w, b, impl=impl)


__all__ = ["conv", "depthwise_conv", "separable_conv", "window_taps", "batch_blocked", "IMPLS"]
