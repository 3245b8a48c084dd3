"""One mesh everywhere: a 1-D `data` axis over all devices (one CPU is a mesh of one)."""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from cnn_lab.ops._checks import fail


def make_mesh(devices=None) -> Mesh:
  return Mesh(np.asarray(devices if devices is not None else jax.devices()), ("data",))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def data_sharded(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P("data"))


def check_batch_divides(global_batch: int, mesh: Mesh, argument: str = "batch_size") -> None:
  if global_batch % mesh.size:
    raise fail(argument, f"a multiple of the {mesh.size} devices", global_batch)


def global_batch(local: dict, mesh: Mesh) -> dict:
  """This host's numpy batch -> global jax arrays sharded along `data`."""
  sharding = data_sharded(mesh)
  return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in local.items()}


def mesh_for_batches(*batch_sizes: int, num_devices: int = 0) -> Mesh:
  """The first `num_devices` devices (0: all). On CPU, where host devices are only a
  way to use the cores, as many of those as divide every batch size (e.g. 2 of 3 for
  batches of 128 and 100); elsewhere the batches must divide."""
  devices = jax.devices()
  if num_devices < 0 or num_devices > len(devices):
    raise fail("num_devices", f"0 (all) or 1..{len(devices)}", num_devices)
  devices = devices[:num_devices or len(devices)]
  if jax.default_backend() == "cpu":
    n = max(d for d in range(1, len(devices) + 1) if all(b % d == 0 for b in batch_sizes))
    devices = devices[:n]
  return make_mesh(devices)
