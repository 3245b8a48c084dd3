"""Max and average pooling (1D/2D/3D by the rank of `x: [N, *spatial, C]`), and global pools.

Output size along each spatial dim: floor((n + p_lo + p_hi - span) / s) + 1, where the
window's span is f, or d(f - 1) + 1 with max pooling's dilation d; `ceil_mode` rounds up
as PyTorch does. Padded positions never win a max (they are -inf) and, by default, are
not counted in an average (TensorFlow's convention; `count_include_pad=True` is
PyTorch's default).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax.numpy as jnp
import numpy as np
from jax import lax

from cnn_lab.errors import fail
from cnn_lab.ops._checks import PaddingLike, tuple_arg
from cnn_lab.ops.conv import IMPLS, window_taps
from cnn_lab.ops.padding import check_window_fits, out_sizes, resolve_padding, window_spans


def _prepare(x, window, stride, padding, impl, ceil_mode: bool = False, dilation=1):
  """-> (window, strides, padding pairs (ceil_mode's extra rows included), dilation,
  the declared padding pairs)."""
  if impl not in IMPLS:
    raise fail("impl", f"one of {IMPLS}", impl)
  if x.ndim not in (3, 4, 5):
    raise fail("x.ndim", "3, 4 or 5 ([N, *spatial, C] for 1D, 2D or 3D pooling)", x.ndim)
  ndim = x.ndim - 2
  window = tuple_arg(window, ndim, "window")
  strides = window if stride is None else tuple_arg(stride, ndim, "stride")
  dilation = tuple_arg(dilation, ndim, "dilation")
  spans = window_spans(window, dilation)
  declared = pairs = resolve_padding(padding, x.shape[1:-1], spans, strides)
  if ceil_mode:  # the last window may hang past the input (PyTorch's rule)
    pairs = tuple(_ceil_pad(n, f, s, p) for n, f, s, p in zip(x.shape[1:-1], spans, strides,
                                                               declared))
  check_window_fits(x.shape[1:-1], pairs, window, dilation, argument="window")
  return window, strides, pairs, dilation, declared


def _ceil_pad(n: int, f: int, s: int, pair: tuple[int, int]) -> tuple[int, int]:
  """PyTorch's ceil_mode: out = ceil((n + lo + hi - f) / s) + 1 (f: the window's span),
  except that a last window starting past the input and its low padding is dropped, as
  PyTorch drops it; the extra rows this needs go at the high end."""
  lo, hi = pair
  out = -(-(n + lo + hi - f) // s) + 1
  if (out - 1) * s >= n + lo:
    out -= 1
  return lo, max(hi, (out - 1) * s + f - n - lo)


def _tiles(x, window, strides, pairs) -> bool:
  """True when the windows tile the input exactly: stride == window, no padding."""
  return (tuple(window) == tuple(strides) and all(p == (0, 0) for p in pairs)
          and all(n % f == 0 for n, f in zip(x.shape[1:-1], window)))


def _reduce(x, init, op, window, strides, pairs, impl, stack_reduce, dilation=None):
  dilation = dilation or (1,) * len(window)
  if impl == "xla" and _tiles(x, window, strides, pairs) and set(dilation) == {1}:
    # A reshape and a reduction: XLA differentiates it elementwise, where reduce_window's
    # select-and-scatter gradient runs as a scatter (LeNet-5's step: 1.24x on a CPU).
    split = [d for n, f in zip(x.shape[1:-1], window) for d in (n // f, f)]
    tiles = x.reshape(x.shape[0], *split, x.shape[-1])
    return stack_reduce(tiles, axis=tuple(range(2, 2 * len(window) + 1, 2)))
  if impl == "xla" and set(dilation) == {1}:  # JAX has no gradient for dilated windows:
    return lax.reduce_window(x, init, op, (1, *window, 1), (1, *strides, 1),  # those use
                             ((0, 0), *pairs, (0, 0)))  # the strided slices below
  xp = jnp.pad(x, ((0, 0), *pairs, (0, 0)), constant_values=init)
  out = out_sizes(x.shape[1:-1], pairs, window, strides, dilation)
  views = [v for _, v in window_taps(xp, window, strides, dilation, out)]
  return stack_reduce(jnp.stack(views), axis=0)


def max_pool(x, window: int | Sequence[int], stride: int | Sequence[int] | None = None,
             padding: PaddingLike = 0, *, dilation: int | Sequence[int] = 1,
             ceil_mode: bool = False, impl: str = "xla"):
  """Max over each window. `stride` defaults to `window`. Returns `[N, *out, C]`.

  dilation (PyTorch's): the window's taps `dilation` apart, spanning d(f - 1) + 1; both
  impls then take the maximum over strided slices (JAX has no gradient for
  `lax.reduce_window` with window dilation).
  ceil_mode (PyTorch's): out = ceil((n + 2p - span) / s) + 1 instead of floor, minus a
  last window that would start in the high padding.
  Gradient at ties: where windows tile the input (stride == window, no padding) and
  with `impl="scratch"`, tied maxima share it equally; other windows with
  `impl="xla"` give it to one of them (`lax.reduce_window`'s rule).
  """
  window, strides, pairs, dilation, _ = _prepare(x, window, stride, padding, impl,
                                                 ceil_mode, dilation)
  return _reduce(x, np.array(-np.inf, x.dtype), lax.max, window, strides, pairs, impl,
                 jnp.max, dilation)


def avg_pool(x, window: int | Sequence[int], stride: int | Sequence[int] | None = None,
             padding: PaddingLike = 0, *, count_include_pad: bool = False,
             ceil_mode: bool = False, impl: str = "xla"):
  """Mean over each window. `stride` defaults to `window`. Returns `[N, *out, C]`.

  The divisor, as PyTorch's `avg_pool`: with `count_include_pad`, the window's cells
  inside the input and its declared padding (not the extra rows of `ceil_mode`);
  without, the cells inside the input only.
  """
  window, strides, pairs, _, declared = _prepare(x, window, stride, padding, impl, ceil_mode)
  check_window_fits(x.shape[1:-1], declared, window, argument="window")  # before ceil rows
  zero = np.array(0, x.dtype)  # numpy: a concrete init lets autodiff see the monoid
  total = _reduce(x, zero, lax.add, window, strides, pairs, impl, jnp.sum)
  if all(p == (0, 0) for p in pairs) or (count_include_pad and pairs == declared):
    return total / np.prod(window)
  ones = jnp.ones((1, *x.shape[1:-1], 1), x.dtype)
  if count_include_pad:  # the declared padding counts: pad with ones, the rest with zeros
    ones = jnp.pad(ones, ((0, 0), *declared, (0, 0)), constant_values=1)
    pairs = tuple((0, hi - d_hi) for (_, hi), (_, d_hi) in zip(pairs, declared))
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
