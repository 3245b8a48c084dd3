"""One mesh everywhere: a 1-D `data` axis over all devices (one CPU is a mesh of one)."""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from cnn_lab.errors import fail


def make_mesh(devices=None) -> Mesh:
  return Mesh(np.asarray(devices if devices is not None else jax.devices()), ("data",))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def data_sharded(mesh: Mesh, stacked: bool = False) -> NamedSharding:
  """Split along the batch axis: the first, or the second of `stacked` batches
  `[k, batch, ...]` (several steps' batches in one dispatch)."""
  return NamedSharding(mesh, P(None, "data") if stacked else P("data"))


def check_batch_divides(global_batch: int, mesh: Mesh, argument: str = "batch_size") -> None:
  if global_batch % mesh.size:
    raise fail(argument, f"a multiple of the {mesh.size} devices", global_batch)


def global_batch(local: dict, mesh: Mesh, stacked: bool = False) -> dict:
  """This host's numpy batch (or `stacked` batches `[k, batch, ...]`) -> global jax
  arrays sharded along `data`."""
  sharding = data_sharded(mesh, stacked)
  return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in local.items()}


def step_batch(local: dict, mesh: Mesh, stacked: bool = False) -> dict:
  """What a jitted step whose `in_shardings` split the batch takes: on one process the
  numpy batch itself, which the call places (on 2 CPU cores ~25 us against ~160 us for
  building the global arrays first: the quick start's LeNet-5 makes 660 such calls);
  across processes the global arrays of `global_batch`."""
  return local if jax.process_count() == 1 else global_batch(local, mesh, stacked)


def stack_batches(batches: list[dict]) -> dict:
  """Host batches -> one stacked `[n, batch, ...]` (a view for one batch)."""
  if len(batches) == 1:
    return {k: v[None] for k, v in batches[0].items()}
  return {k: np.stack([b[k] for b in batches]) for k in batches[0]}


def mesh_for_batches(*batch_sizes: int, local_devices: int = 0) -> Mesh:
  """Every process's first `local_devices` devices (0: all of them). On CPU, where host
  devices are only a way to use the cores, as many of those as make every batch size
  divide (e.g. 2 of 3 for batches of 128 and 100); elsewhere the batches must divide."""
  hosts = jax.process_count()
  local = jax.local_device_count()
  if local_devices < 0 or local_devices > local:
    raise fail("local_devices", f"0 (all) or 1..{local} (this process's devices)",
               local_devices)
  n = local_devices or local
  if jax.default_backend() == "cpu":
    n = max((d for d in range(1, n + 1) if all(b % (d * hosts) == 0 for b in batch_sizes)),
            default=1)  # none divides: the batch check names the batch size
  by_process = {}
  for d in jax.devices():
    by_process.setdefault(d.process_index, []).append(d)
  return make_mesh([d for p in sorted(by_process) for d in by_process[p][:n]])
