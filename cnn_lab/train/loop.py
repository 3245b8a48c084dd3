"""The training loop shared by every task: build, resume, train, evaluate, checkpoint, log.

`train_and_evaluate(config, workdir)` is all `experiments/train.py` calls. A run
killed at any point and relaunched with the same command resumes from its last
checkpoint and ends with the same parameters as an uninterrupted run: the
checkpoint holds params, batch statistics, optimizer state, step, RNG and the
data-iterator position, and all randomness derives from (seed, step).
"""

from __future__ import annotations

import os
import shutil
import signal
import time

import jax
import ml_collections
from absl import logging

from cnn_lab import paths
from cnn_lab.errors import RunStoppedError, fail
from cnn_lab.train import mesh as mesh_lib
from cnn_lab.train.checkpoint import Checkpointer, UnreadableCheckpointsError, abstract_like
from cnn_lab.train.experiment import Experiment, build_experiment
from cnn_lab.train.metrics import MetricsWriter, PendingMetrics, Progress, read_metrics
from cnn_lab.train.phases import Phases
from cnn_lab.train.state import savable
from cnn_lab.train.workdir import (WorkdirLock, check_relaunch, clean_temporary,
                                   ensure_writable, final_metrics, first_missing_dir, set_aside_run,
                                   write_run_files)
from cnn_lab.viz import import_pyplot_in_background, plot_curves


class NonFiniteLossError(RunStoppedError, FloatingPointError):
  """The training loss became NaN or inf; the run stopped before saving it."""


class NonFiniteParamsError(RunStoppedError, FloatingPointError):
  """The parameters to save diverged (see `state.savable`); the run stopped unsaved."""


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


def check_finite(host_metrics: list[dict], first: int, last: int, last_good: str) -> None:
  """Raises `NonFiniteLossError` if a step in `first..last` (those `host_metrics` come
  from) had a NaN or inf loss; `last_good` says where the last good checkpoint is."""
  if any(m["nonfinite"] for m in host_metrics):
    raise NonFiniteLossError(
        f"the training loss became NaN or inf between steps {first} and {last}; stopped "
        f"without saving. Last good checkpoint: {last_good}. "
        "Lower the learning rate or add gradient clipping (optimizer.grad_clip_norm).")


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
    try:
      restored = self.checkpointer.restore(abstract_like(exp.state), check=self._resume_data)
    except UnreadableCheckpointsError as e:
      self.checkpointer.close()
      raise UnreadableCheckpointsError(
          f"{e}. Relaunch with --start_over to set them aside and train from step 0.") from e
    if restored is not None:
      self.state, data_state, _ = restored
      self.pending = PendingMetrics(data_state["pending_metrics"])
    self.resumed = restored is not None
    self.step = int(self.state.step)
    self.last_saved = self.checked_step = self.step  # every step up to checked: finite
    self.workdir, self.writer, self.progress, self.final = workdir, None, None, {}

  def _resume_data(self, data_state: dict) -> None:
    """Positions the data iterator from a checkpoint's data part; raises (so the
    checkpoint counts as damaged) if that part is not what `save` wrote."""
    pending = data_state["pending_metrics"]
    if not (isinstance(pending, list) and all(isinstance(m, dict) for m in pending)):
      raise fail("pending_metrics", "a list of dicts", pending)
    self.data_iter.set_state(data_state["iterator"])

  def last_good(self) -> str:
    good = self.checkpointer.latest_step()
    return f"{'none' if good is None else f'step {good}'} in {self.checkpointer.directory}"

  def start(self) -> None:
    """Opens the outputs (metrics.jsonl, TensorBoard, progress) for training on."""
    if self.resumed:
      logging.info("Resumed from the checkpoint at step %d.", self.step)
    self.writer = MetricsWriter(self.workdir, resume_step=self.step)
    self.progress = Progress(self.exp.total_steps, self.step, self.config.log_every_steps)

  def train_step(self) -> None:
    """One dispatch of `steps_per_dispatch` steps, fewer where that would run past the
    end or where a resumed run starts between dispatches (it realigns)."""
    k = self.exp.steps_per_dispatch
    n = min(k - self.step % k, self.exp.total_steps - self.step)
    batches = mesh_lib.stack_batches([next(self.data_iter) for _ in range(n)])
    self.state, metrics = self.exp.train_steps(
        self.state, mesh_lib.step_batch(batches, self.exp.mesh, stacked=True))
    self.pending.append(metrics)
    self.step += n

  def host_pending(self) -> list[dict]:
    """Fetches the pending metrics (one sync) and proves every step's loss finite."""
    host = self.pending.to_host()
    check_finite(host, self.checked_step + 1, self.step, self.last_good())
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
    batches = (mesh_lib.step_batch(b, self.exp.mesh) for b in self.exp.eval_batches)
    results = dict(self.exp.task.evaluate(self.exp.eval_step, self.state, batches))
    self.writer.write(self.step, results)
    self.final.update(results)
    logging.info("step %d  %s", self.step,
                 "  ".join(f"{k}={v:.4f}" for k, v in results.items()))

  def save(self) -> None:
    """A checkpoint of this step with the data position and the pending metrics, once
    every loss since the last one and the state itself (`savable`) are finite."""
    pending = self.host_pending()
    if not bool(savable(self.state)):
      raise NonFiniteParamsError(
          f"the parameters after step {self.step} diverged (not finite, or beyond float32's "
          "range when squared) although every loss was finite; stopped without saving. "
          f"Last good checkpoint: {self.last_good()}. Lower the learning rate or add "
          "gradient clipping (optimizer.grad_clip_norm).")
    self.checkpointer.save(self.step, self.state,
                           {"iterator": self.data_iter.get_state(), "pending_metrics": pending})
    self.last_saved = self.step

  def close(self, *, failing: bool = False) -> None:
    """Closes the outputs; with `failing` (an error on its way out, e.g. a full disk)
    an output that cannot flush does not replace that error."""
    for output in (self.progress, self.writer, self.checkpointer):
      if output is not None:
        try:
          output.close()
        except OSError:
          if not failing:
            raise


def stopped_short(result: dict) -> bool:
  """Whether a `train_and_evaluate` result is that of a run a SIGTERM stopped (saved)
  before its last step: a driver that chains runs stops there too, to be resumed."""
  return result["step"] < result["total_steps"]


def _rounded(metrics: dict) -> dict:
  return {k: round(v, 5) if isinstance(v, float) else v for k, v in metrics.items()}


def _due(step: int, every: int, total: int) -> bool:
  return step % every == 0 or step == total


def _open(config: ml_collections.ConfigDict, workdir: str, resume_with_changes: bool,
          start_over: bool, phases: Phases) -> tuple[Experiment, "Run"]:
  """With the workdir locked: cleans what killed writes left, sets the previous run
  aside (`start_over`) or checks the config may resume it, builds the experiment,
  writes the run files and opens the run (resuming from its checkpoint)."""
  clean_temporary(workdir)
  if start_over:
    set_aside_run(workdir)
  else:
    check_relaunch(config, workdir, resume_with_changes)
  exp = build_experiment(config, phases=phases)
  write_run_files(config, exp, workdir)
  with phases("checkpoints"):  # reading one to resume from
    return exp, Run(config, exp, workdir)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *,
                       resume_with_changes: bool = False, start_over: bool = False) -> dict:
  """Trains `config` in `workdir` (resuming if a checkpoint is there); returns the final
  metrics with `step` and `total_steps` (`step` is short of it after a SIGTERM's stop).
  The workdir is locked for the run (`workdir.WorkdirLock`); a relaunch with another
  config is refused unless `resume_with_changes` allows its changes
  (`workdir.check_relaunch`); `start_over` sets a previous run aside first. A run that
  already finished there is reported in one line, and nothing is written."""
  workdir = paths.resolve(workdir)
  created = first_missing_dir(workdir)
  workdir = ensure_writable(workdir)
  lock = WorkdirLock(workdir).acquire()
  phases = Phases()
  try:
    exp, run = _open(config, workdir, resume_with_changes, start_over, phases)
    return _train(config, exp, run, workdir, phases)
  except BaseException:
    lock.release()
    if created and set(os.listdir(workdir)) <= {".lock"}:  # leave no empty run behind
      shutil.rmtree(created, ignore_errors=True)
    raise
  finally:
    lock.release()


def _train(config: ml_collections.ConfigDict, exp: Experiment, run: Run, workdir: str,
           phases: Phases) -> dict:
  if run.resumed and run.step >= exp.total_steps:
    run.close()
    done = {"step": run.step, **final_metrics(workdir)}
    logging.info("Already finished at step %d/%d in %s; nothing to do. Final: %s",
                 run.step, exp.total_steps, workdir, _rounded(done))
    return {**done, "total_steps": exp.total_steps}
  try:
    run.start()
    if jax.process_index() == 0:  # the process that draws the closing figure
      import_pyplot_in_background()
    logging.info("Training %s on %s for %d steps (batch %d) on %d %s device(s).",
                 config.model.name, config.dataset.name, exp.total_steps, config.batch_size,
                 exp.mesh.size, jax.default_backend())
    with _StopFlag() as stop:
      start = time.perf_counter()
      first = run.step
      while run.step < exp.total_steps and not stop.requested:
        # the first dispatch compiles the step; the evaluation's first call its own
        with phases("first step (compiling)" if run.step == first else "training"):
          run.train_step()
          if run.step % config.log_every_steps == 0:
            run.log_pending()
        if _due(run.step, config.eval_every_steps, exp.total_steps):
          with phases("evaluation"):
            run.log_pending()
            run.evaluate()
        if _due(run.step, config.checkpoint_every_steps, exp.total_steps):
          with phases("checkpoints"):
            run.save()
      if run.step != run.last_saved:  # stopped early by SIGTERM
        run.save()
      elapsed = time.perf_counter() - start
  except OSError as e:  # metrics or TensorBoard: a full disk, a lost mount
    stopped = RunStoppedError(f"could not write {e.filename or 'in ' + workdir} "
                              f"({e.strerror or e}); last good checkpoint: "
                              f"{run.last_good()}. Free space (or fix the path) and "
                              "relaunch to resume.")
    run.close(failing=True)
    raise stopped from e
  except BaseException:
    run.close(failing=True)
    raise
  run.close()
  if jax.process_index() == 0:
    plot_curves(read_metrics(paths.join(workdir, "metrics.jsonl")),
                paths.join(workdir, "curves.png"),
                f"{config.model.name} on {config.dataset.name}", metric=exp.task.headline)
  result = {"step": run.step, **run.final}
  logging.info("Stopped at step %d/%d after %.1fs of training. Final: %s", run.step,
               exp.total_steps, elapsed, _rounded(result))
  logging.info("Time: %s.", phases.summary())
  # a caller that chains runs stops where a SIGTERM stopped this one (`stopped_short`)
  return {**result, "total_steps": exp.total_steps}
