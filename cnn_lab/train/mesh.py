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
