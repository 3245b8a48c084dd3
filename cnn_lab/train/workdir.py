"""A run's workdir: who owns it, which run it holds, and what a relaunch may change.

- `WorkdirLock`: one training process per workdir. The lock is an `fcntl` lock on
  `workdir/.lock`, which the kernel drops when its holder dies, however it dies; the
  file says who holds it (pid, host, start time) for the refusal a second launcher
  gets. A lock left by a killed run is taken over, and the log says so.
- `check_relaunch`: a relaunch compares its config with the run's `config.json`. A
  change in what shapes the train state or the data order (`FIXED`: anything not in
  `ADJUSTABLE` or `FREE`) is refused; a new learning rate, schedule or length
  (`ADJUSTABLE`) needs `--resume_with_changes`; cadence and paths (`FREE`) may change.
- `set_aside_run`: `--start_over` moves the previous run into `previous_run_N/`.
- `clean_temporary`: what a killed write left behind, removed on the next launch.
- `write_run_files`, `final_metrics`: the run's config.json and task.json; its result.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import fcntl
import json
import os
import socket

import jax
import ml_collections
from absl import logging

from cnn_lab import paths
from cnn_lab.errors import RunStoppedError, fail
from cnn_lab.train.experiment import Experiment
from cnn_lab.train.metrics import read_metrics

LOCK_NAME = ".lock"
# Keys a relaunch may change freely: how often to log, evaluate and save, where data is,
# how many steps a dispatch runs (the same steps; bitwise for LeNet-5, to rounding for
# BatchNorm models: `steps.jit_train_steps`).
FREE = ("log_every_steps", "eval_every_steps", "checkpoint_every_steps", "keep_checkpoints",
        "dataset.data_dir", "dataset.cache", "steps_per_dispatch")
# Keys a relaunch may change with `--resume_with_changes`: they change the run from the
# checkpoint on, not what the checkpoint holds nor the order of the training data.
ADJUSTABLE = ("optimizer.learning_rate", "optimizer.weight_decay", "optimizer.b1",
              "optimizer.b2", "schedule.", "num_epochs", "num_train_steps",
              "eval_batch_size", "dataset.eval_split", "compute_dtype", "local_devices")
RUN_FILES = ("checkpoints", "metrics.jsonl", "tensorboard", "config.json", "task.json",
             "curves.png")


def first_missing_dir(workdir: str) -> str | None:
  """The top-most folder that creating `workdir` makes (`workdir` itself or a missing
  parent, e.g. `DIR` of `DIR/seed0/plain-20`); None if it exists or is a bucket URL.
  A launch that fails before writing anything removes it, parents included."""
  if paths.is_url(workdir):
    return None
  top, path = None, os.path.abspath(workdir)
  while not os.path.exists(path) and os.path.dirname(path) != path:
    top, path = path, os.path.dirname(path)
  return top


def ensure_writable(workdir: str) -> str:
  """Creates `workdir` if needed and proves it writable, or says why it is not; returns
  it absolute (local) or unchanged (a bucket URL)."""
  workdir = paths.resolve(workdir)
  probe = paths.join(workdir, f".write_test.{os.getpid()}")
  try:
    paths.make_dirs(workdir)
    paths.write_atomic(probe, "ok")
    paths.remove(probe)
  except (OSError, ImportError) as e:  # ImportError: a bucket without its file system
    raise fail("workdir", f"a writable directory ({type(e).__name__}: "
                          f"{getattr(e, 'strerror', None) or e})",
               workdir) from None
  return workdir


def _describe(holder: str) -> str:
  try:
    info = json.loads(holder)
    return f"pid {info['pid']} on {info['host']} since {info['started']}"
  except (ValueError, KeyError, TypeError):
    return "another process"


class WorkdirLock:
  """Held by process 0 of a training run on a local (or NFS) workdir, from before the
  build to the end of the run; a bucket workdir is not locked (no `fcntl` there)."""

  def __init__(self, workdir: str):
    self.path = paths.join(workdir, LOCK_NAME)
    self.file = None
    self.workdir = workdir

  def acquire(self) -> "WorkdirLock":
    if paths.is_url(self.workdir) or jax.process_index() != 0:
      return self
    file = open(self.path, "a+")  # noqa: SIM115  held open for the run
    try:
      fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      file.seek(0)
      holder = _describe(file.read())
      file.close()
      raise fail("workdir", f"a workdir no other run is using (in use by {holder}: "
                            "wait for it, stop it, or choose another --workdir)",
                 self.workdir) from None
    file.seek(0)
    left = file.read()
    if left.strip():  # a holder that never released it: it was killed
      logging.warning("Took over the workdir lock of %s, which is no longer running.",
                      _describe(left))
    file.seek(0)
    file.truncate()
    file.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                           "started": datetime.datetime.now(datetime.timezone.utc)
                           .strftime("%Y-%m-%d %H:%M:%S UTC")}))
    file.flush()
    self.file = file
    return self

  def release(self) -> None:
    """Empties the file (an empty lock file means a clean end) and unlocks it."""
    if self.file is None:
      return
    with contextlib.suppress(OSError):  # a full disk must not hide the run's own error
      self.file.truncate(0)
      self.file.flush()
    fcntl.flock(self.file, fcntl.LOCK_UN)
    self.file.close()
    self.file = None


def _flat(tree: dict, prefix: str = "") -> dict:
  out = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      out.update(_flat(value, f"{prefix}{key}."))
    else:
      out[f"{prefix}{key}"] = value
  return out


def config_changes(saved: dict, config: ml_collections.ConfigDict) -> dict[str, tuple]:
  """Dotted key -> (saved value, new value) for every key that differs (JSON values:
  tuples as lists; a key one side lacks is `None` there)."""
  old = _flat(saved)
  new = _flat(json.loads(config.to_json_best_effort()))
  return {k: (old.get(k), new.get(k)) for k in sorted(set(old) | set(new))
          if old.get(k) != new.get(k)}


def _kind(key: str) -> str:
  if key in FREE:
    return "free"
  return "adjustable" if any(key == a or (a.endswith(".") and key.startswith(a))
                             for a in ADJUSTABLE) else "fixed"


def _listed(changes: dict) -> str:
  return ", ".join(f"{k} {old!r} -> {new!r}" for k, (old, new) in changes.items())


def holds_checkpoint(workdir: str) -> bool:
  root = paths.join(workdir, "checkpoints")
  return paths.is_dir(root) and any(name.isdigit() for name in paths.list_dir(root))


def check_relaunch(config: ml_collections.ConfigDict, workdir: str,
                   resume_with_changes: bool = False) -> None:
  """Refuses a relaunch of a workdir holding a checkpoint whose config changed what the
  checkpoint cannot follow (see the module docstring); logs the changes it accepts."""
  saved_path = paths.join(workdir, "config.json")
  if not (holds_checkpoint(workdir) and paths.exists(saved_path)):
    return
  try:
    saved = json.loads(paths.read_text(saved_path))
  except (ValueError, OSError) as e:  # cut short or garbled: the run it describes is unknown
    raise RunStoppedError(
        f"{saved_path} cannot be read ({type(e).__name__}: {e}), so whether this config may "
        "resume the run is unknown. Put back the run's config.json, or relaunch with "
        "--start_over to set the previous run aside.") from None
  changes = config_changes(saved, config)
  by_kind = {kind: {k: v for k, v in changes.items() if _kind(k) == kind}
             for kind in ("fixed", "adjustable", "free")}
  if by_kind["fixed"]:
    raise RunStoppedError(
        f"the config differs from the run in {workdir} in what its checkpoints hold or "
        f"its data order: {_listed(by_kind['fixed'])}. Choose another --workdir, or "
        "relaunch with --start_over to set the previous run aside.")
  if by_kind["adjustable"] and not resume_with_changes:
    raise RunStoppedError(
        f"the config differs from the run in {workdir}: {_listed(by_kind['adjustable'])}. "
        "Relaunch with --resume_with_changes (experiments.train) to continue the run with "
        "these values, or choose another --workdir.")
  if by_kind["adjustable"] or by_kind["free"]:
    logging.warning("Resuming with config changes: %s",
                    _listed({**by_kind["adjustable"], **by_kind["free"]}))


def set_aside_run(workdir: str) -> str | None:
  """Moves the previous run's files into `workdir/previous_run_N/` (N = 1, 2, ...);
  returns that folder, or None when there was nothing to move."""
  present = [name for name in RUN_FILES if paths.exists(paths.join(workdir, name))]
  if jax.process_count() > 1:  # every process sees the folder before process 0 moves it
    from jax.experimental import multihost_utils
    multihost_utils.sync_global_devices("start_over")
  if not present or jax.process_index() != 0:
    return _synced(None)
  n = 1
  while paths.exists(paths.join(workdir, f"previous_run_{n}")):
    n += 1
  target = paths.join(workdir, f"previous_run_{n}")
  paths.make_dirs(target)
  for name in present:
    paths.rename(paths.join(workdir, name), paths.join(target, name))
  logging.warning("Starting over: the previous run's %s moved to %s.", ", ".join(present),
                  target)
  return _synced(target)


def _synced(result):
  """`result` once every process got here (process 0 has moved the previous run)."""
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils
    multihost_utils.sync_global_devices("start_over_done")
  return result


def clean_temporary(workdir: str) -> list[str]:
  """Removes the temporary files a killed write left in `workdir` (`.NAME.tmp.PID`,
  `.write_test.PID`); orbax cleans its own. Call with the lock held. Returns them."""
  if paths.is_url(workdir) or jax.process_index() != 0:
    return []
  left = [name for name in os.listdir(workdir)
          if name.startswith(".") and (".tmp." in name or name.startswith(".write_test."))
          and not name.endswith(f".{os.getpid()}")]
  for name in left:
    os.remove(os.path.join(workdir, name))
  if left:
    logging.info("Removed %d temporary file(s) an earlier run left: %s", len(left),
                 ", ".join(left))
  return left


def _write_if_changed(path: str, text: str) -> None:
  if not (paths.exists(path) and paths.read_text(path) == text):
    paths.write_atomic(path, text)


def write_run_files(config: ml_collections.ConfigDict, exp: Experiment, workdir: str) -> None:
  """config.json and task.json (the task's settings with what it fitted to the data, read
  back by `task.with_fitted`), written once the experiment is built (a launch that
  fails leaves no run-looking workdir) and only when they change."""
  if jax.process_index() != 0:
    return
  _write_if_changed(paths.join(workdir, "config.json"),
                    config.to_json_best_effort(indent=2, sort_keys=True))
  _write_if_changed(paths.join(workdir, "task.json"), json.dumps(
      {"task": config.task, **dataclasses.asdict(exp.task), **exp.task.fitted()}, indent=2))


def final_metrics(workdir: str) -> dict:
  """The last value of each metric in the workdir's metrics.jsonl."""
  final = {}
  for record in read_metrics(paths.join(workdir, "metrics.jsonl")):
    final.update({k: v for k, v in record.items() if k != "step"})
  return final
