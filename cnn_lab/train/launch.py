"""What the absl entrypoints share: config loading, override-key checks, the run wrapper."""

from __future__ import annotations

import hashlib
import importlib.util
import logging as std_logging
import os
import platform
import sys

import ml_collections
from absl import app, flags

from cnn_lab.errors import USER_ERRORS, InputError, fail


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
      raise InputError(f"--{flag}.{key}: unknown config key; valid keys"
                       f"{' under ' + parent if parent and near else ''}: "
                       f"{', '.join(near or valid)}")


# Libraries whose INFO lines a user cannot act on (their warnings still show), and
# messages that are noise at any level: JAX probing for a TPU on every machine, TFDS
# noting the version folder it is about to create.
CHATTY = ("/orbax/", "/tensorflow_datasets/")
NOISE = ("Unable to initialize backend", "has no dataset_info.json")


def useful_record(record) -> bool:
  """Whether a log record belongs in a run's log (see `CHATTY`, `NOISE`)."""
  try:
    message = record.getMessage()
  except Exception:  # noqa: BLE001  a record that cannot format is shown as it is
    message = str(record.msg)
  if any(noise in message for noise in NOISE):
    return False
  return record.levelno >= std_logging.WARNING or not any(
      lib in record.pathname for lib in CHATTY)


def quiet_library_logs() -> None:
  """Filters the absl handler (which prints every library's logging) with
  `useful_record`."""
  from absl import logging
  handler = logging.get_absl_handler()
  if useful_record not in handler.filters:
    handler.addFilter(useful_record)


TRACEBACK_ENV = "CNN_LAB_TRACEBACK"


def wants_traceback(argv: list[str]) -> bool:
  """`CNN_LAB_TRACEBACK=1`, or absl's `--verbosity` (`-v`) of 1 or more."""
  if os.environ.get(TRACEBACK_ENV, "") not in ("", "0"):
    return True
  if flags.FLAGS.is_parsed():
    return flags.FLAGS.verbosity >= 1
  values = [a.split("=", 1)[1] for a in argv if a.startswith(("--verbosity=", "-v="))]
  return any(v.lstrip("-").isdigit() and int(v) >= 1 for v in values)


def run(main, argv: list[str] | None = None, flag: str = "config", flags_parser=None) -> None:
  """`absl.app.run(main)` on every CPU core: the boundary of every entry point.

  Config override keys are checked first. The project's user errors (`USER_ERRORS`:
  bad input, data not to be had here, a run stopped on purpose) end in one
  `error: ...` line on stderr and exit status 1, the traceback only on request
  (`wants_traceback`); any other exception is a bug and shows its traceback.
  """
  use_every_cpu_core()
  use_compilation_cache()
  quiet_library_logs()
  argv = list(sys.argv if argv is None else argv)
  spec = next((a.split("=", 1)[1] for a in argv if a.startswith(f"--{flag}=")), None)
  try:
    if spec is not None:
      check_override_keys(load_config(spec), argv, flag)
    app.run(main, argv=argv, **({"flags_parser": flags_parser} if flags_parser else {}))
  except USER_ERRORS as e:
    if wants_traceback(argv):
      sys.excepthook = sys.__excepthook__  # a failed save may have silenced it
      raise
    print(f"error: {e}", file=sys.stderr, flush=True)
    if getattr(e, "exit_now", False):  # background writers left failing: no shutdown
      sys.stdout.flush()
      os._exit(1)
    sys.exit(1)


COMPILATION_CACHE_ENV = "CNN_LAB_COMPILATION_CACHE"
DEFAULT_COMPILATION_CACHE = os.path.join(os.path.expanduser("~"), ".cache", "cnn_lab", "xla")


def use_compilation_cache() -> str | None:
  """JAX's persistent compilation cache for every program, however quick to compile:
  a launch compiles dozens of small ones (each initializer's shape, the steps, the
  evaluation), ~0.3 s each on a CPU, and a second launch of the same model loads them
  instead (LeNet-5's initialization: 6.7 s -> 0.7 s; README "Start-up"). The folder is
  `$CNN_LAB_COMPILATION_CACHE` (`off` turns it off), else `~/.cache/cnn_lab/xla`; a
  cache JAX was already given (`JAX_COMPILATION_CACHE_DIR`) is kept. Entries are keyed
  by the program, the compiler options, the devices and the jax/jaxlib versions, so a
  cached program is the one that would be compiled. They do not name the host CPU's
  instruction set, so the default folder has one subfolder per CPU (`host_cpu_tag`):
  a home directory shared by AVX-512 and AVX2 machines never hands one the other's
  code. -> the folder, or None."""
  import jax
  folder = jax.config.jax_compilation_cache_dir
  if not folder:
    folder = os.environ.get(COMPILATION_CACHE_ENV) or os.path.join(
        DEFAULT_COMPILATION_CACHE, host_cpu_tag())
    if folder.lower() in ("0", "off", "none"):
      return None
    jax.config.update("jax_compilation_cache_dir", folder)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
  return folder


def host_cpu_tag() -> str:
  """A short name for this host's CPU: its model and instruction-set flags, hashed."""
  text = platform.machine()
  try:
    with open("/proc/cpuinfo") as f:
      text += "".join(sorted({line for line in f if line.startswith(("model name", "flags"))}))
  except OSError:
    text += platform.processor()
  return f"{platform.machine()}-{hashlib.sha256(text.encode()).hexdigest()[:12]}"


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
