"""Padding and output-size arithmetic, the course's `n + 2p - f` over `s` plus one.

`padding` everywhere in `cnn_lab.ops` accepts:
  * an int `p`: symmetric zero padding of `p` on every spatial side (course notation);
  * "VALID": no padding;
  * "SAME": TensorFlow's convention, output size ceil(n / s), and an odd total
    pad puts the extra pixel at the bottom/right;
  * a sequence of one entry per spatial dim, each an int (symmetric) or a
    `(low, high)` pair.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax.numpy as jnp

from cnn_lab.errors import fail
from cnn_lab.ops._checks import PaddingLike, tuple_arg

Pairs = tuple[tuple[int, int], ...]


def output_size(n: int, f: int, p: int = 0, s: int = 1) -> int:
  """Output length of a convolution or pooling along one dim.

  output_size(n, f, p, s) = floor((n + 2p - f) / s) + 1

  Args:
    n: input length. f: filter length. p: symmetric padding. s: stride.
  """
  if s <= 0:
    raise fail("s", "a stride >= 1", s)
  if f > n + 2 * p:
    raise fail("f", f"a filter no larger than the padded input n + 2p = {n + 2 * p}", f)
  return (n + 2 * p - f) // s + 1


def window_spans(window: Sequence[int], dilation: Sequence[int] | None = None
                 ) -> tuple[int, ...]:
  """The input extent of each (dilated) window: (f - 1) * d + 1."""
  dilation = dilation or (1,) * len(window)
  return tuple((f - 1) * d + 1 for f, d in zip(window, dilation))


def resolve_padding(padding: PaddingLike, in_sizes: Sequence[int],
                    window: Sequence[int], strides: Sequence[int],
                    dilation: Sequence[int] | None = None) -> Pairs:
  """Turns any accepted `padding` into explicit `(low, high)` pairs per spatial dim.

  `window` is the undilated filter size; the effective size is (f - 1) * d + 1.
  """
  ndim = len(in_sizes)
  eff = window_spans(window, dilation)
  if isinstance(padding, str):
    mode = padding.upper()
    if mode == "VALID":
      return ((0, 0),) * ndim
    if mode == "SAME":
      pairs = []
      for n, f, s in zip(in_sizes, eff, strides):
        total = max((math.ceil(n / s) - 1) * s + f - n, 0)
        pairs.append((total // 2, total - total // 2))
      return tuple(pairs)
    raise fail("padding", "'SAME', 'VALID', an int or (low, high) pairs", padding)
  if isinstance(padding, int) and not isinstance(padding, bool):
    if padding < 0:
      raise fail("padding", "an int >= 0", padding)
    return ((padding, padding),) * ndim
  if isinstance(padding, Sequence) and len(padding) == ndim:
    pairs = []
    for entry in padding:
      if isinstance(entry, int) and not isinstance(entry, bool):
        entry = (entry, entry)
      if not (isinstance(entry, Sequence) and len(entry) == 2 and
              all(isinstance(v, int) and v >= 0 for v in entry)):
        raise fail("padding", f"{ndim} ints or (low, high) pairs of ints >= 0", padding)
      pairs.append(tuple(entry))
    return tuple(pairs)
  raise fail("padding", f"'SAME', 'VALID', an int or {ndim} (low, high) pairs", padding)


def check_window_fits(in_sizes: Sequence[int], pairs: Pairs, window: Sequence[int],
                      dilation: Sequence[int] | None = None,
                      argument: str = "w") -> None:
  """Raises when the (dilated) window is larger than the padded input."""
  for n, (lo, hi), eff in zip(in_sizes, pairs, window_spans(window, dilation)):
    if eff > n + lo + hi:
      raise fail(f"{argument} (spatial size)",
                 f"a window no larger than the padded input {n + lo + hi}",
                 tuple(window))


def out_sizes(in_sizes: Sequence[int], pairs: Pairs, window: Sequence[int],
              strides: Sequence[int], dilation: Sequence[int] | None = None) -> tuple[int, ...]:
  """Output spatial sizes for explicit padding pairs (asymmetric allowed)."""
  return tuple((n + lo + hi - eff) // s + 1
               for n, (lo, hi), eff, s in zip(in_sizes, pairs, window_spans(window, dilation),
                                              strides))


def zero_pad(x, pad: PaddingLike, *, value: float = 0.0):
  """Pads the spatial dims of `x: [N, *spatial, C]` with `value` (zeros by default).

  `pad` is an int, or one int / `(low, high)` pair per spatial dim. The course's
  `zero_pad(X, pad)` is `zero_pad(x, pad)` with an int.
  Returns `[N, *(n + low + high), C]`.
  """
  if x.ndim < 3:
    raise fail("x.ndim", ">= 3 ([N, *spatial, C])", x.ndim)
  if isinstance(pad, str):
    raise fail("pad", "an int or (low, high) pairs (strings need a window: use conv)", pad)
  ndim = x.ndim - 2
  pairs = resolve_padding(pad, x.shape[1:-1], (1,) * ndim, (1,) * ndim)
  return jnp.pad(x, ((0, 0),) + pairs + ((0, 0),), constant_values=value)


__all__ = ["output_size", "resolve_padding", "zero_pad", "out_sizes", "check_window_fits",
           "tuple_arg"]
