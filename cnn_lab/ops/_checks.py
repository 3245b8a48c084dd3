"""Argument checks shared by the ops and layers (errors in `cnn_lab.errors.fail`'s format)."""

from __future__ import annotations

from collections.abc import Sequence

from cnn_lab.errors import fail

PaddingLike = int | str | Sequence[int | tuple[int, int]]


def spatial_dims_of_kernel(w, argument: str = "w") -> int:
  """Number of spatial dims (1, 2 or 3) of a kernel of rank 3/4/5 ([*K, I, O])."""
  if w.ndim not in (3, 4, 5):
    raise fail(f"{argument}.ndim", "3, 4 or 5 (a 1D, 2D or 3D kernel [*K, I, O])", w.ndim)
  return w.ndim - 2


def check_input_rank(x, ndim: int, argument: str = "x") -> None:
  if x.ndim != ndim + 2:
    raise fail(f"{argument}.ndim", f"{ndim + 2} ([N, *spatial, C] for a {ndim}D op)",
               x.ndim)


def tuple_arg(value, ndim: int, argument: str, *, minimum: int = 1) -> tuple[int, ...]:
  """An int or a sequence of `ndim` ints, each >= minimum, as a tuple."""
  if isinstance(value, int) and not isinstance(value, bool):
    values = (value,) * ndim
  elif isinstance(value, Sequence) and len(value) == ndim and all(
      isinstance(v, int) and not isinstance(v, bool) for v in value):
    values = tuple(value)
  else:
    raise fail(argument, f"an int or {ndim} ints", value)
  if any(v < minimum for v in values):
    raise fail(argument, f"values >= {minimum}", value)
  return values
