"""Trace-time recording of layer calls: for model summaries (shapes, parameters, MACs,
under `jax.eval_shape`, so nothing is computed) and for diagnostics (the outputs
themselves, inside the traced function that records them).

Layers call `record(module, kind, y, macs)`; outside `recording()` it is a no-op.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses

from flax import nnx

_ACTIVE: contextvars.ContextVar[list | None] = contextvars.ContextVar("records", default=None)


@dataclasses.dataclass
class LayerCall:
  module: object
  kind: str
  output: object  # the layer's output array (a tracer while tracing)
  macs: int

  @property
  def out_shape(self) -> tuple[int, ...]:
    return tuple(int(d) for d in self.output.shape)


@contextlib.contextmanager
def recording():
  """Collects a list of `LayerCall`s, in call order."""
  calls: list[LayerCall] = []
  token = _ACTIVE.set(calls)
  try:
    yield calls
  finally:
    _ACTIVE.reset(token)


def record(module, kind: str, y, macs: int = 0) -> None:
  """Notes that `module` (a layer of `kind`) returned `y`, costing `macs` multiplies."""
  calls = _ACTIVE.get()
  if calls is not None:
    calls.append(LayerCall(module, kind, y, int(macs)))


def module_paths(model: nnx.Module) -> dict[int, str]:
  """id(module) -> its path in `model` ("blocks/3/conv", "model" for the root): the
  names of the recorded calls of that model."""
  return {id(m): "/".join(map(str, path)) or "model"
          for path, m in nnx.iter_graph(model) if isinstance(m, nnx.Module)}
