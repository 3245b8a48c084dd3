"""The training loop shared by every task: build, resume, train, evaluate, checkpoint, log.

`train_and_evaluate(config, workdir)` is all `experiments/train.py` calls. A run
killed at any point and relaunched with the same command resumes from its last
checkpoint and ends with the same parameters as an uninterrupted run: the
checkpoint holds params, batch statistics, optimizer state, step, RNG and the
data-iterator position, and all randomness derives from (seed, step).
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import time

import jax
import ml_collections
import numpy as np
from absl import logging

from cnn_lab import paths
from cnn_lab.errors import RunStoppedError, fail
from cnn_lab.train import mesh as mesh_lib
from cnn_lab.train.checkpoint import Checkpointer, abstract_like
from cnn_lab.train.experiment import Experiment, build_experiment
from cnn_lab.train.metrics import MetricsWriter, Progress, read_metrics
from cnn_lab.viz import plot_curves


class NonFiniteLossError(RunStoppedError, FloatingPointError):
  """The training loss became NaN or inf; the run stopped before saving it."""


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


class _StopFlag:
  """Turns SIGTERM into a request to checkpoint and exit at the next step boundary."""

  def __init__(self):
    self.requested = False
    self.previous = None

  def __enter__(self):
    try:
      self.previous = signal.signal(signal.SIGTERM, self._handle)
    except ValueError:  # not the main thread: leave signals alone
      self.previous = None
    return self

  def _handle(self, signum, frame):
    del signum, frame
    logging.warning("SIGTERM received: saving a checkpoint and stopping.")
    self.requested = True

  def __exit__(self, *exc):
    if self.previous is not None:
      signal.signal(signal.SIGTERM, self.previous)


def summarise(pending: list[dict]) -> dict:
  """Means of the per-step host metrics since the last report; `nonfinite` is a count,
  `learning_rate` the last value."""
  out = {}
  for key in pending[0]:
    values = np.array([m[key] for m in pending], np.float64)
    if key == "nonfinite":
      out[key] = float(values.sum())
    elif key == "learning_rate":
      out[key] = float(values[-1])
    else:
      out[f"train/{key}"] = float(values.mean())
  return out


def check_finite(host_metrics: list[dict], first: int, last: int, last_good: str) -> None:
  """Raises `NonFiniteLossError` if a step in `first..last` (those `host_metrics` come
  from) had a NaN or inf loss; `last_good` says where the last good checkpoint is."""
  if any(m["nonfinite"] for m in host_metrics):
    raise NonFiniteLossError(
        f"the training loss became NaN or inf between steps {first} and {last}; stopped "
        f"without saving. Last good checkpoint: {last_good}. "
        "Lower the learning rate or add gradient clipping (optimizer.grad_clip_norm).")


class PendingMetrics:
  """Per-step training metrics not yet logged: device scalars as the steps return them
  (no sync per step), fetched together when logged or saved with a checkpoint."""

  def __init__(self, items=()):
    self.items = list(items)

  def append(self, metrics: dict) -> None:
    self.items.append(metrics)

  def to_host(self) -> list[dict]:
    """The pending metrics as host floats (one device sync); they stay pending."""
    self.items = [{k: float(v) for k, v in m.items()} for m in jax.device_get(self.items)]
    return self.items

  def take_summary(self) -> dict:
    """`summarise` of the (host) pending metrics without `nonfinite`; clears them."""
    if not self.items:
      return {}
    summary = summarise(self.items)
    summary.pop("nonfinite")
    self.items = []
    return summary


class Run:
  """A training run between steps: the state, the step, the data position and the
  pending metrics, and where they go (checkpoints, metrics.jsonl, progress line).
  Opening it resumes from the latest readable checkpoint of `workdir`, if any."""

  def __init__(self, config: ml_collections.ConfigDict, exp: Experiment, workdir: str):
    self.config, self.exp = config, exp
    self.data_iter = exp.train_iterator()
    self.checkpointer = Checkpointer(paths.join(workdir, "checkpoints"),
                                     max_to_keep=config.keep_checkpoints)
    self.state, self.pending = exp.state, PendingMetrics()
    restored = self.checkpointer.restore(abstract_like(exp.state))
    if restored is not None:
      self.state, data_state, saved_step = restored
      self.data_iter.set_state(data_state["iterator"])
      self.pending = PendingMetrics(data_state["pending_metrics"])
      del saved_step  # the state's own step
    self.resumed = restored is not None
    self.step = int(self.state.step)
    self.last_saved = self.checked_step = self.step  # every step up to checked: finite
    self.workdir, self.writer, self.progress, self.final = workdir, None, None, {}

  def start(self) -> None:
    """Opens the outputs (metrics.jsonl, TensorBoard, progress) for training on."""
    if self.resumed:
      logging.info("Resumed from the checkpoint at step %d.", self.step)
    self.writer = MetricsWriter(self.workdir, resume_step=self.step)
    self.progress = Progress(self.exp.total_steps, self.step, self.config.log_every_steps)

  def train_step(self) -> None:
    batch = mesh_lib.global_batch(next(self.data_iter), self.exp.mesh)
    self.state, metrics = self.exp.train_step(self.state, batch)
    self.pending.append(metrics)
    self.step += 1

  def host_pending(self) -> list[dict]:
    """Fetches the pending metrics (one sync) and proves every step's loss finite."""
    host = self.pending.to_host()
    good = self.checkpointer.latest_step()
    check_finite(host, self.checked_step + 1, self.step,
                 f"{'none' if good is None else f'step {good}'} in "
                 f"{self.checkpointer.directory}")
    self.checked_step = self.step
    return host

  def log_pending(self) -> None:
    if not self.pending.items:
      return
    self.host_pending()
    summary = self.pending.take_summary()
    self.writer.write(self.step, summary)
    self.final.update(summary)
    self.writer.write(self.step, {"perf/steps_per_sec": self.progress.update(self.step,
                                                                             summary)},
                      to_jsonl=False)

  def evaluate(self) -> None:
    batches = (mesh_lib.global_batch(b, self.exp.mesh) for b in self.exp.eval_batches)
    results = dict(self.exp.task.evaluate(self.exp.eval_step, self.state, batches))
    self.writer.write(self.step, results)
    self.final.update(results)
    logging.info("step %d  %s", self.step,
                 "  ".join(f"{k}={v:.4f}" for k, v in results.items()))

  def save(self) -> None:
    """A checkpoint of this step with the data position and the pending metrics."""
    self.checkpointer.save(self.step, self.state,
                           {"iterator": self.data_iter.get_state(),
                            "pending_metrics": self.host_pending()})
    self.last_saved = self.step

  def close(self) -> None:
    for output in (self.progress, self.writer, self.checkpointer):
      if output is not None:
        output.close()


def _rounded(metrics: dict) -> dict:
  return {k: round(v, 5) if isinstance(v, float) else v for k, v in metrics.items()}


def _due(step: int, every: int, total: int) -> bool:
  return step % every == 0 or step == total


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


def _build(config: ml_collections.ConfigDict, workdir: str) -> tuple[Experiment, str]:
  """-> (`build_experiment`, the workdir resolved and writable); a workdir this launch
  created is removed again if the build fails."""
  workdir = paths.resolve(workdir)
  created = not paths.is_url(workdir) and not os.path.exists(workdir)
  workdir = ensure_writable(workdir)
  try:
    return build_experiment(config), workdir
  except BaseException:
    if created and not os.listdir(workdir):
      os.rmdir(workdir)
    raise


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains `config` in `workdir` (resuming if a checkpoint is there); returns final metrics.
  A run that already finished there is reported in one line, and nothing is written."""
  exp, workdir = _build(config, workdir)
  write_run_files(config, exp, workdir)
  run = Run(config, exp, workdir)
  if run.resumed and run.step >= exp.total_steps:
    run.close()
    done = {"step": run.step, **final_metrics(workdir)}
    logging.info("Already finished at step %d/%d in %s; nothing to do. Final: %s",
                 run.step, exp.total_steps, workdir, _rounded(done))
    return done
  run.start()
  logging.info("Training %s on %s for %d steps (batch %d) on %d %s device(s).",
               config.model.name, config.dataset.name, exp.total_steps, config.batch_size,
               exp.mesh.size, jax.default_backend())
  try:
    with _StopFlag() as stop:
      start = time.perf_counter()
      while run.step < exp.total_steps and not stop.requested:
        run.train_step()
        if run.step % config.log_every_steps == 0:
          run.log_pending()
        if _due(run.step, config.eval_every_steps, exp.total_steps):
          run.log_pending()
          run.evaluate()
        if _due(run.step, config.checkpoint_every_steps, exp.total_steps):
          run.save()
      if run.step != run.last_saved:  # stopped early by SIGTERM
        run.save()
      elapsed = time.perf_counter() - start
  finally:
    run.close()
  if jax.process_index() == 0:
    plot_curves(read_metrics(paths.join(workdir, "metrics.jsonl")),
                paths.join(workdir, "curves.png"),
                f"{config.model.name} on {config.dataset.name}", metric=exp.task.headline)
  result = {"step": run.step, **run.final}
  logging.info("Stopped at step %d/%d after %.1fs of training. Final: %s", run.step,
               exp.total_steps, elapsed, _rounded(result))
  return result
