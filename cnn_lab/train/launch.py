"""What the absl entrypoints share: config loading, override-key checks, the run wrapper."""

from __future__ import annotations

import importlib.util
import os
import sys

import ml_collections
from absl import app

from cnn_lab.errors import UnavailableError, fail


def load_config(spec: str) -> ml_collections.ConfigDict:
  """`path/to/config.py[:preset,...]` -> `get_config(preset)`, as config_flags reads it."""
  path, _, arg = spec.partition(":")
  if not os.path.exists(path):
    raise fail("config", "an existing config file", path)
  module_spec = importlib.util.spec_from_file_location("_cnn_lab_config", path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module.get_config(arg or None)


def flat_keys(config: ml_collections.ConfigDict, prefix: str = "") -> list[str]:
  """All dotted leaf keys of a config, sorted."""
  keys = []
  for k, v in config.items():
    name = f"{prefix}{k}"
    keys += flat_keys(v, name + ".") if isinstance(v, ml_collections.ConfigDict) else [name]
  return sorted(keys)


def check_override_keys(config: ml_collections.ConfigDict, argv: list[str],
                        flag: str = "config") -> None:
  """Raises a one-line error for a `--config.a.b=...` whose key the config lacks."""
  valid = flat_keys(config)
  for arg in argv:
    if not arg.startswith(f"--{flag}."):
      continue
    key = arg[len(flag) + 3:].split("=", 1)[0]
    if key not in valid and not any(v.startswith(key + ".") for v in valid):
      parent = key.rpartition(".")[0]
      near = [v for v in valid if v.startswith(parent + ".")] if parent else valid
      raise ValueError(f"--{flag}.{key}: unknown config key; valid keys"
                       f"{' under ' + parent if parent and near else ''}: "
                       f"{', '.join(near or valid)}")


def quiet_library_logs() -> None:
  """Keeps orbax's per-save INFO chatter out of our log; its warnings still show."""
  import logging as std_logging

  from absl import logging
  logging.get_absl_handler().addFilter(
      lambda r: r.levelno >= std_logging.WARNING or "/orbax/" not in r.pathname)


def run(main, argv: list[str] | None = None, flag: str = "config") -> None:
  """`absl.app.run(main)` on every CPU core, after checking config override keys with a
  clear message; data that cannot be fetched or is not prepared ends in one `error:`
  line (exit status 1), not a traceback."""
  use_every_cpu_core()
  quiet_library_logs()
  argv = list(sys.argv if argv is None else argv)
  spec = next((a.split("=", 1)[1] for a in argv if a.startswith(f"--{flag}=")), None)
  if spec is not None:
    try:
      check_override_keys(load_config(spec), argv, flag)
    except ValueError as e:
      sys.exit(f"error: {e}")
  try:
    app.run(main, argv=argv)
  except UnavailableError as e:  # data that cannot be had here: the message says what to do
    sys.exit(f"error: {e}")


HOST_DEVICE_FLAG = "--xla_force_host_platform_device_count"


def use_every_cpu_core() -> None:
  """One XLA host device per core, the launcher's default on CPU: one device runs most of
  a step on about one core (README "Performance": the ResNet-20 step 1.19-1.3x faster on
  2 cores, a full run there no faster). An explicit
  `--xla_force_host_platform_device_count` in `XLA_FLAGS` wins. Takes effect only if
  called before JAX initialises its backends; accelerators are unaffected."""
  flags = os.environ.get("XLA_FLAGS", "")
  if HOST_DEVICE_FLAG not in flags:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    os.environ["XLA_FLAGS"] = f"{flags} {HOST_DEVICE_FLAG}={cores or 1}".strip()


def initialize_distributed(coordinator_address: str = "", num_processes: int = 0,
                           process_id: int = -1, auto: bool = False) -> bool:
  """Joins a multi-host run before JAX is used; returns whether it did.

  From the arguments, else the environment (`JAX_COORDINATOR_ADDRESS`,
  `JAX_NUM_PROCESSES`, `JAX_PROCESS_ID`), else, with `auto`, JAX's cluster detection
  (Cloud TPU pod slices, SLURM, Open MPI). With none of these, a single process runs.
  CPU hosts exchange gradients over gloo.
  """
  import jax
  address = coordinator_address or os.environ.get("JAX_COORDINATOR_ADDRESS", "")
  count = num_processes or int(os.environ.get("JAX_NUM_PROCESSES", "0"))
  index = process_id if process_id >= 0 else int(os.environ.get("JAX_PROCESS_ID", "-1"))
  if not address and not auto:
    return False
  if address and (count < 1 or not 0 <= index < count):
    raise fail("process_id", f"0..num_processes-1 with num_processes >= 1 for coordinator "
               f"{address}", f"process_id={index}, num_processes={count}")
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  if address:
    jax.distributed.initialize(address, count, index)
  else:
    jax.distributed.initialize()
  return True
