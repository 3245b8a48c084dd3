"""Max and average pooling (1D/2D/3D by the rank of `x: [N, *spatial, C]`), and global pools.

Output size along each spatial dim: floor((n + p_lo + p_hi - f) / s) + 1.
Padded positions never win a max (they are -inf) and, by default, are not
counted in an average (TensorFlow's convention; `count_include_pad=True` is PyTorch's).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax.numpy as jnp
import numpy as np
from jax import lax

from cnn_lab.errors import fail
from cnn_lab.ops._checks import PaddingLike, tuple_arg
from cnn_lab.ops.conv import IMPLS, window_taps
from cnn_lab.ops.padding import check_window_fits, out_sizes, resolve_padding


def _prepare(x, window, stride, padding, impl, ceil_mode: bool = False):
  if impl not in IMPLS:
    raise fail("impl", f"one of {IMPLS}", impl)
  if x.ndim not in (3, 4, 5):
    raise fail("x.ndim", "3, 4 or 5 ([N, *spatial, C] for 1D, 2D or 3D pooling)", x.ndim)
  ndim = x.ndim - 2
  window = tuple_arg(window, ndim, "window")
  strides = window if stride is None else tuple_arg(stride, ndim, "stride")
  pairs = resolve_padding(padding, x.shape[1:-1], window, strides)
  if ceil_mode:  # the last window may hang past the input (PyTorch's rule)
    pairs = tuple(_ceil_pad(n, f, s, p) for n, f, s, p in zip(x.shape[1:-1], window, strides,
                                                               pairs))
  check_window_fits(x.shape[1:-1], pairs, window, argument="window")
  return window, strides, pairs


def _ceil_pad(n: int, f: int, s: int, pair: tuple[int, int]) -> tuple[int, int]:
  """PyTorch's ceil_mode: out = ceil((n + lo + hi - f) / s) + 1, except that the last
  window must start inside the input or the low padding; extra rows go at the end."""
  lo, hi = pair
  out = -(-(n + lo + hi - f) // s) + 1
  if (out - 1) * s >= n + lo:
    out -= 1
  return lo, max(hi, (out - 1) * s + f - n - lo)


def _tiles(x, window, strides, pairs) -> bool:
  """True when the windows tile the input exactly: stride == window, no padding."""
  return (tuple(window) == tuple(strides) and all(p == (0, 0) for p in pairs)
          and all(n % f == 0 for n, f in zip(x.shape[1:-1], window)))


def _reduce(x, init, op, window, strides, pairs, impl, stack_reduce):
  if impl == "xla" and _tiles(x, window, strides, pairs):
    # A reshape and a reduction: XLA differentiates it elementwise, where reduce_window's
    # select-and-scatter gradient runs as a scatter (LeNet-5's step: 1.24x on a CPU).
    split = [d for n, f in zip(x.shape[1:-1], window) for d in (n // f, f)]
    tiles = x.reshape(x.shape[0], *split, x.shape[-1])
    return stack_reduce(tiles, axis=tuple(range(2, 2 * len(window) + 1, 2)))
  if impl == "xla":
    return lax.reduce_window(x, init, op, (1, *window, 1), (1, *strides, 1),
                             ((0, 0), *pairs, (0, 0)))
  xp = jnp.pad(x, ((0, 0), *pairs, (0, 0)), constant_values=init)
  out = out_sizes(x.shape[1:-1], pairs, window, strides)
  views = [v for _, v in window_taps(xp, window, strides, (1,) * len(window), out)]
  return stack_reduce(jnp.stack(views), axis=0)


def max_pool(x, window: int | Sequence[int], stride: int | Sequence[int] | None = None,
             padding: PaddingLike = 0, *, ceil_mode: bool = False, impl: str = "xla"):
  """Max over each window. `stride` defaults to `window`. Returns `[N, *out, C]`.

  ceil_mode (PyTorch's): out = ceil((n + 2p - f) / s) + 1 instead of floor.
  Gradient at ties: where windows tile the input (stride == window, no padding) and
  with `impl="scratch"`, tied maxima share it equally; other windows with
  `impl="xla"` give it to one of them (`lax.reduce_window`'s rule).
  """
  window, strides, pairs = _prepare(x, window, stride, padding, impl, ceil_mode)
  return _reduce(x, np.array(-np.inf, x.dtype), lax.max, window, strides, pairs, impl,
                 jnp.max)


def avg_pool(x, window: int | Sequence[int], stride: int | Sequence[int] | None = None,
             padding: PaddingLike = 0, *, count_include_pad: bool = False, impl: str = "xla"):
  """Mean over each window. `stride` defaults to `window`. Returns `[N, *out, C]`."""
  window, strides, pairs = _prepare(x, window, stride, padding, impl)
  zero = np.array(0, x.dtype)  # numpy: a concrete init lets autodiff see the monoid
  total = _reduce(x, zero, lax.add, window, strides, pairs, impl, jnp.sum)
  if count_include_pad or all(p == (0, 0) for p in pairs):
    size = 1
    for f in window:
      size *= f
    return total / size
  ones = jnp.ones((1, *x.shape[1:-1], 1), x.dtype)
  counts = _reduce(ones, zero, lax.add, window, strides, pairs, impl, jnp.sum)
  return total / counts


def adaptive_avg_pool(x, output_size: int | Sequence[int]):
  """PyTorch's AdaptiveAvgPool: output cell i averages input rows
  [floor(i * n / o), ceil((i + 1) * n / o)). `x: [N, *spatial, C]` -> `[N, *output_size, C]`.

  Equal to the identity when n == o, and to a plain average pool when o divides n.
  """
  if x.ndim not in (3, 4, 5):
    raise fail("x.ndim", "3, 4 or 5 ([N, *spatial, C])", x.ndim)
  sizes = tuple_arg(output_size, x.ndim - 2, "output_size")
  for axis, o in enumerate(sizes, start=1):
    n = x.shape[axis]
    if n == o:
      continue
    cells = [jnp.mean(lax.slice_in_dim(x, (i * n) // o, -(-((i + 1) * n) // o), axis=axis),
                      axis=axis, keepdims=True) for i in range(o)]
    x = jnp.concatenate(cells, axis=axis)
  return x


def global_avg_pool(x, *, keepdims: bool = False):
  """Mean over all spatial dims: `[N, *spatial, C]` -> `[N, C]` (or `[N, 1.., C]`)."""
  if x.ndim < 3:
    raise fail("x.ndim", ">= 3 ([N, *spatial, C])", x.ndim)
  return jnp.mean(x, axis=tuple(range(1, x.ndim - 1)), keepdims=keepdims)


def global_max_pool(x, *, keepdims: bool = False):
  """Max over all spatial dims: `[N, *spatial, C]` -> `[N, C]` (or `[N, 1.., C]`)."""
  if x.ndim < 3:
    raise fail("x.ndim", ">= 3 ([N, *spatial, C])", x.ndim)
  return jnp.max(x, axis=tuple(range(1, x.ndim - 1)), keepdims=keepdims)


__all__ = ["max_pool", "avg_pool", "adaptive_avg_pool", "global_avg_pool", "global_max_pool"]
