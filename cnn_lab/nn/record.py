"""Trace-time recording of layer calls, for model summaries (shapes, parameters, MACs).

Layers call `record(module, kind, out_shape, macs)`; outside `recording()` it is a
no-op. It runs while tracing (e.g. under `jax.eval_shape`), so nothing is computed.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses

_ACTIVE: contextvars.ContextVar[list | None] = contextvars.ContextVar("records", default=None)


@dataclasses.dataclass
class LayerCall:
  module: object
  kind: str
  out_shape: tuple[int, ...]
  macs: int


@contextlib.contextmanager
def recording():
  """Collects a list of `LayerCall`s, in call order."""
  calls: list[LayerCall] = []
  token = _ACTIVE.set(calls)
  try:
    yield calls
  finally:
    _ACTIVE.reset(token)


def record(module, kind: str, out_shape, macs: int = 0) -> None:
  calls = _ACTIVE.get()
  if calls is not None:
    calls.append(LayerCall(module, kind, tuple(int(d) for d in out_shape), int(macs)))
