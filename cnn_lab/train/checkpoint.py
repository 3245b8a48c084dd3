"""Orbax checkpoints of (train state, data-iterator state), atomic, with fallback on restore.

Orbax writes each step to a temporary folder and renames it when complete, so a
run killed mid-save leaves the previous checkpoints intact (its temporary folder is
removed on the next launch). On restore, the newest checkpoint that reads back (and
passes the caller's `check`) is used; newer unreadable ones are reported and, unless
`read_only`, renamed `N.unreadable` so the step can be saved again. When none reads,
nothing is renamed and `UnreadableCheckpointsError` says why.
"""

from __future__ import annotations

import contextlib
import logging as std_logging
import sys
import threading

import jax
import orbax.checkpoint as ocp
from absl import logging

from cnn_lab import paths
from cnn_lab.errors import RunStoppedError


class UnreadableCheckpointsError(RunStoppedError):
  """Every checkpoint of a workdir failed to read back; none was changed."""


class CheckpointWriteError(RunStoppedError):
  """A checkpoint could not be written (a full disk, a lost bucket); earlier ones stand.
  Entry points exit at once after reporting it (`exit_now`): orbax's writer threads,
  failing too, would otherwise print at interpreter shutdown."""
  exit_now = True


def _first_line(e: BaseException) -> str:
  text = str(e).strip()
  return f"{type(e).__name__}: {text.splitlines()[0][:200] if text else ''}"


def _orbax_thread_errors(record) -> bool:
  """Drops orbax's own ERROR records (tracebacks from its writer threads) while a save
  whose failure is reported in one line is in flight."""
  return not ("/orbax/" in record.pathname and record.levelno >= std_logging.ERROR)


@contextlib.contextmanager
def _quiet_orbax_errors():
  """While a save is in flight, orbax's failing writer threads stay silent: their
  error is the save's, reported once by `save`. Thread exceptions stay silent after a
  failed save too, as orbax's remaining threads fail in turn while the run stops."""
  handler = logging.get_absl_handler()
  handler.addFilter(_orbax_thread_errors)
  # tensorstore reports its callbacks' failures through sys.excepthook, threads through
  # threading.excepthook; `launch.run` puts sys.excepthook back for a requested traceback
  hooks = sys.excepthook, threading.excepthook, sys.unraisablehook
  sys.excepthook = threading.excepthook = sys.unraisablehook = lambda *args: None
  failed = False
  try:
    yield
  except BaseException:
    failed = True
    raise
  finally:
    if not failed:
      handler.removeFilter(_orbax_thread_errors)
      sys.excepthook, threading.excepthook, sys.unraisablehook = hooks


def _save_replicas_in_parallel_only_across_hosts() -> None:
  """Orbax's replica-parallel saving (its default off GPU) has each replica of a
  replicated array write a slice of it. Across hosts that shares the writing; within one
  process it only adds a slicing program per array shape, compiled at the first save:
  9.2 of GoogLeNet's 11.2 s first save on 2 CPU devices went there. The files read the
  same either way (only the chunking differs)."""
  default, wanted = ocp.type_handlers.get_type_handler(jax.Array), jax.process_count() > 1
  if getattr(default, "_use_replica_parallel", None) == wanted:
    return
  absl_logger = std_logging.getLogger("absl")
  level = absl_logger.level
  absl_logger.setLevel(std_logging.ERROR)  # orbax warns of any override, meant or not
  try:
    ocp.type_handlers.register_type_handler(jax.Array, ocp.type_handlers.ArrayHandler(
        use_replica_parallel=wanted,  # the default's metadata store kept
        array_metadata_store=getattr(default, "_array_metadata_store", None)), override=True)
  finally:
    absl_logger.setLevel(level)


class Checkpointer:
  """`save(step, state, data_state)` / `restore(abstract_state) -> (state, data_state,
  step) | None`. `read_only`: never writes, renames or deletes (inference tools)."""

  def __init__(self, directory: str, *, max_to_keep: int = 3, read_only: bool = False):
    _save_replicas_in_parallel_only_across_hosts()
    self.directory = paths.resolve(directory)
    self.read_only = read_only
    options = ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep, create=not read_only, read_only=read_only,
        cleanup_tmp_directories=not read_only, enable_async_checkpointing=False)
    self.manager = ocp.CheckpointManager(self.directory, options=options,
                                         item_names=("state", "data"))

  def save(self, step: int, state, data_state: dict) -> None:
    try:
      with _quiet_orbax_errors():
        self.manager.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state), data=ocp.args.JsonSave(data_state)),
            force=True)
        self.manager.wait_until_finished()
    except Exception as e:  # noqa: BLE001  (disk, quota, bucket: the run stops in one line)
      latest = self.latest_step()
      raise CheckpointWriteError(
          f"could not save the checkpoint at step {step} in {self.directory} "
          f"({_first_line(e)}); "
          f"{'no earlier checkpoint' if latest is None else f'the one at step {latest} is intact'}"
          ". Free space (or fix the path) and relaunch to resume.") from e

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def restore(self, abstract_state, check=None):
    """Newest readable checkpoint as (state, data_state, step), or None when there is
    none; `check(data_state)` raises for data it cannot use (it counts as damage)."""
    failures = []
    for step in sorted(self.manager.all_steps(), reverse=True):
      try:
        restored = self.manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state), data=ocp.args.JsonRestore()))
        if check is not None:
          check(restored["data"])
      except Exception as e:  # noqa: BLE001  (any unreadable file: fall back, say why)
        failures.append((step, _first_line(e)))
        continue
      for bad, why in failures:
        self._report_unreadable(bad, why, step)
      return restored["state"], restored["data"], step
    if failures:
      raise UnreadableCheckpointsError(
          f"none of the {len(failures)} checkpoint(s) in {self.directory} can be read "
          f"(step {failures[0][0]}: {failures[0][1]}); nothing was changed")
    return None

  def _report_unreadable(self, step: int, why: str, used: int) -> None:
    if self.read_only:
      logging.warning("Checkpoint at step %d in %s is unreadable (%s); using step %d.",
                      step, self.directory, why, used)
      return
    aside = self._set_aside(step)
    logging.warning("Checkpoint at step %d in %s is unreadable (%s); moved it to %s and "
                    "resuming from step %d.", step, self.directory, why, aside, used)

  def _set_aside(self, step: int) -> str:
    """Renames an unreadable step folder (kept for inspection) so the step can be saved again."""
    source = paths.join(self.directory, str(step))
    target = f"{source}.unreadable"
    suffix = 0
    while paths.exists(target):
      suffix += 1
      target = f"{source}.unreadable{suffix}"
    if jax.process_index() == 0:
      paths.rename(source, target)
    self.manager.reload()
    return target

  def close(self) -> None:
    self.manager.close()


def abstract_like(state):
  """ShapeDtypeStructs with shardings, the restore target for `state`."""
  return jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
