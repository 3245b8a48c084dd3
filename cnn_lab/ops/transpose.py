"""Transpose ("fractionally strided") convolution: every input pixel scatters the whole
kernel onto the output, overlaps added (the gradient of `conv` w.r.t. its input), with
PyTorch's stride, padding, output_padding, dilation and groups; `impl` "xla" or
"scratch" as the other convolutions."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import jax.numpy as jnp
from jax import lax

from cnn_lab.errors import fail
from cnn_lab.ops._checks import (PaddingLike, check_input_rank, spatial_dims_of_kernel,
                                 tuple_arg)
from cnn_lab.ops.conv import _check_impl, _dimension_numbers
from cnn_lab.ops.padding import resolve_padding, window_spans


def conv_transpose(x, w, b=None, *, stride: int | Sequence[int] = 1,
                   padding: PaddingLike = "VALID", output_padding: int | Sequence[int] = 0,
                   dilation: int | Sequence[int] = 1, groups: int = 1, impl: str = "xla"):
  """Transpose ("fractionally strided") convolution, the gradient of `conv` w.r.t. its input.

  The course's algorithm: every input pixel multiplies the whole kernel, the
  result lands on the output at (pixel position * stride), overlaps are added.
  That full output has length (n - 1)*s + d(f - 1) + 1 and is then cropped by `padding`.

  Args:
    x: `[N, *spatial, C_in]`.
    w: `[*K, C_in, C_out / groups]` (no flip, no in/out swap: the scatter kernel;
      PyTorch's `[C_in, C_out / groups, *K]` transposed).
    stride: the upsampling factor s.
    padding: "VALID" (length n*s + max(F - s, 0)), "SAME" (n*s), as TensorFlow/Keras,
      with F = d(f - 1) + 1 the kernel's span; an int p or (low, high) pairs crop the
      full output as PyTorch's `padding`.
    output_padding: rows added at the high end (PyTorch's output_padding,
      which resolves the ambiguity of stride > 1).
    dilation: kernel taps d apart (PyTorch's `dilation`).
    groups: input channels in `groups` blocks, each scattered by its own kernels into
      its own block of C_out / groups outputs (PyTorch's `groups`).
  Returns:
    `[N, *out, C_out]`; with int p: out = (n - 1)*s - 2p + d(f - 1) + 1 + output_padding.
  """
  _check_impl(impl)
  ndim = spatial_dims_of_kernel(w)
  check_input_rank(x, ndim)
  if w.shape[-2] != x.shape[-1]:
    raise fail("w.shape[-2] (input channels)", f"x.shape[-1] = {x.shape[-1]}", w.shape[-2])
  if not isinstance(groups, int) or groups < 1 or x.shape[-1] % groups:
    raise fail("groups", f"an int >= 1 dividing the input channels {x.shape[-1]}", groups)
  strides = tuple_arg(stride, ndim, "stride")
  dilation = tuple_arg(dilation, ndim, "dilation")
  output_padding = tuple_arg(output_padding, ndim, "output_padding", minimum=0)
  spans = window_spans(w.shape[:ndim], dilation)
  crops = _transpose_crops(padding, x.shape[1:-1], spans, strides, output_padding)
  for n, f, s, (lo, hi) in zip(x.shape[1:-1], spans, strides, crops):
    if (n - 1) * s + f - lo - hi < 1:
      raise fail("padding", f"crops leaving an output of length >= 1 (full length "
                 f"{(n - 1) * s + f})", padding)
  if impl == "xla":
    # Correlating the stride-dilated input with the flipped kernel scatters it; groups
    # as XLA's feature groups: [*K, C_in / g, g * (C_out / g)], group-major outputs.
    flipped = jnp.flip(w, axis=tuple(range(ndim)))
    per_in, per_out = x.shape[-1] // groups, w.shape[-1]
    kernel = flipped.reshape(*w.shape[:ndim], groups, per_in, per_out)
    kernel = jnp.moveaxis(kernel, ndim, ndim + 1).reshape(*w.shape[:ndim], per_in,
                                                          groups * per_out)
    y = lax.conv_general_dilated(
        x, kernel, (1,) * ndim, [(f - 1 - lo, f - 1 - hi) for f, (lo, hi) in zip(spans, crops)],
        lhs_dilation=strides, rhs_dilation=dilation, dimension_numbers=_dimension_numbers(ndim),
        feature_group_count=groups)
  else:
    y = _conv_transpose_scratch(x, w, strides, crops, dilation, spans, groups)
  return y if b is None else y + b


def _conv_transpose_scratch(x, w, strides, crops, dilation, spans, groups: int):
  window = w.shape[:len(strides)]
  zero = jnp.zeros((), jnp.result_type(x, w))
  grouped = x.reshape(*x.shape[:-1], groups, x.shape[-1] // groups)
  y = None
  for tap in itertools.product(*(range(f) for f in window)):
    # Each pixel times this tap (its group's kernels), placed at pixel * s + tap * d.
    kernels = w[tap].reshape(groups, x.shape[-1] // groups, w.shape[-1])
    term = jnp.einsum("...gi,gio->...go", grouped, kernels,
                      preferred_element_type=zero.dtype)
    term = term.reshape(*x.shape[:-1], groups * w.shape[-1])
    config = [(0, 0, 0)]
    for k, d, span, s, (lo, hi) in zip(tap, dilation, spans, strides, crops):
      config.append((k * d - lo, span - 1 - k * d - hi, s - 1))
    config.append((0, 0, 0))
    term = lax.pad(term, zero, config)
    y = term if y is None else y + term
  return y


def transpose_output_size(n: int, f: int, s: int, padding="VALID", output_padding: int = 0):
  """Output length of a transpose convolution along one dim.

  "VALID": n*s + max(f - s, 0); "SAME": n*s (TensorFlow/Keras);
  int p (PyTorch): (n - 1)*s - 2p + f + output_padding.
  """
  full = (n - 1) * s + f
  (lo, hi), = _transpose_crops(padding, (n,), (f,), (s,), (output_padding,))
  return full - lo - hi


def _transpose_crops(padding, in_sizes, window, strides, output_padding) -> tuple:
  """How much to crop from each end of the full (n - 1)*s + f output (negative: add zeros)."""
  if isinstance(padding, str):
    mode = padding.upper()
    if mode not in ("SAME", "VALID"):
      raise fail("padding", "'SAME', 'VALID', an int or (low, high) crops", padding)
    crops = []
    for f, s, op in zip(window, strides, output_padding):
      if mode == "VALID":
        crops.append((0, min(f - s, 0) - op))  # f < s leaves s - f zero rows at the end
      else:
        # Back to n*s as the gradient of a SAME conv: its pad max(f - s, 0) is cropped,
        # the odd pixel at the bottom/right; f < s leaves zero rows at the end.
        total = f - s
        lo = total // 2 if total > 0 else 0
        crops.append((lo, total - lo - op))
    return tuple(crops)
  pairs = resolve_padding(padding, in_sizes, window, strides)
  return tuple((lo, hi - op) for (lo, hi), op in zip(pairs, output_padding))


__all__ = ["conv_transpose", "transpose_output_size"]
