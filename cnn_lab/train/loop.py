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

import grain
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging
from flax import nnx
from jax.sharding import Mesh

from cnn_lab import paths
from cnn_lab.data import datasets
from cnn_lab.data.pipeline import (InMemorySource, Preprocess, SelectKeys, Subset,
                                   eval_dataset, per_class_indices, train_dataset)
from cnn_lab.models import create_model
from cnn_lab.ops._checks import fail
from cnn_lab.train import mesh as mesh_lib
from cnn_lab.train.checkpoint import Checkpointer, abstract_like
from cnn_lab.train.metrics import MetricsWriter, Progress, read_metrics
from cnn_lab.train.optim import make_optimizer
from cnn_lab.train.state import TrainState, create_train_state
from cnn_lab.train.steps import jit_train_step, make_eval_step
from cnn_lab.train.tasks import make_task
from cnn_lab.viz import plot_curves


class NonFiniteLossError(FloatingPointError):
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


def _summarise(pending: list[dict]) -> dict:
  """Means of the per-step host metrics since the last report; `nonfinite` is a count."""
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


def input_pipelines(config, mesh, task):
  """-> (training source, training batches, evaluation batches, number of training steps)."""
  cfg = config.dataset
  spec = datasets.spec(cfg.name)
  data_dir = cfg.data_dir or None
  source = lambda split: datasets.load_source(cfg.name, split, data_dir)
  train_src, eval_src = map(source, datasets.splits(cfg))
  per_record = None in spec.image_shape  # images of varying size: resize before batching
  wrap = InMemorySource if cfg.cache and not per_record else SelectKeys
  train_src, eval_src = (wrap(s, task.keys, task.encode()) for s in (train_src, eval_src))
  if cfg.get("train_per_class", 0):  # few-shot: the same labelled subset for every variant
    labels = [train_src[i]["label"] for i in range(len(train_src))]
    train_src = Subset(train_src, per_class_indices(labels, cfg.train_per_class,
                                                    cfg.get("subset_seed", 0)))
  preprocess = Preprocess.for_dataset(cfg)
  mesh_lib.check_batch_divides(config.batch_size, mesh)
  mesh_lib.check_batch_divides(config.eval_batch_size, mesh, "eval_batch_size")
  hosts = dict(process_index=jax.process_index(), process_count=jax.process_count(),
               per_record=per_record)
  train = train_dataset(train_src, global_batch=config.batch_size, seed=config.seed,
                        preprocess=preprocess,
                        order=task.batch_order(train_src, config.batch_size, config.seed),
                        **hosts)
  evaluation = eval_dataset(eval_src, global_batch=config.eval_batch_size,
                            preprocess=preprocess, **hosts)
  steps_per_epoch = len(train_src) // config.batch_size
  total = config.num_train_steps if config.num_train_steps > 0 else \
      int(round(config.num_epochs * steps_per_epoch))
  return train_src, train, evaluation, total


COMPUTE_DTYPES = ("float32", "bfloat16")


def compute_dtype(config: ml_collections.ConfigDict):
  """`config.compute_dtype`: None for float32 (no casts), else the dtype activations and
  matmuls run in (parameters, optimizer state and batch statistics stay float32)."""
  name = config.get("compute_dtype", "float32")
  if name not in COMPUTE_DTYPES:
    raise fail("compute_dtype", f"one of {COMPUTE_DTYPES}", name)
  return None if name == "float32" else jnp.dtype(name)


def build_model(config: ml_collections.ConfigDict, task) -> nnx.Module:
  """The model a config trains, initialised from `config.seed`."""
  spec = datasets.spec(config.dataset.name)
  kwargs = {"num_classes": spec.num_classes, "in_channels": spec.image_shape[-1],
            "input_size": config.dataset.image_size,
            **({"dtype": dtype} if (dtype := compute_dtype(config)) is not None else {}),
            **{k: v for k, v in config.model.items() if k != "name"},
            **task.model_kwargs()}  # e.g. segmentation's classes are the mask's, not the spec's
  return create_model(config.model.name, rngs=nnx.Rngs(config.seed), **kwargs)


@dataclasses.dataclass
class Experiment:
  """Everything a config trains with, built but not run: the loop's and the benchmarks'."""
  mesh: Mesh
  task: object
  train_source: object
  train_batches: object  # grain dataset of this host's numpy batches
  eval_batches: object
  total_steps: int
  graphdef: object
  state: TrainState  # replicated over `mesh`
  train_step: object  # jitted (state, global batch) -> (state, metrics); donates the state
  eval_step: object  # jitted (state, global batch) -> task.eval_batch sums

  def train_iterator(self):
    """This host's training batches, checkpointable (`get_state` / `set_state`).

    In-memory batches are one gather each: a single prefetch thread keeps ahead of the
    step, while grain's default 16 threads only contend for the GIL (3-4x slower);
    record reads and decoding release it and keep the default.
    """
    options = grain.ReadOptions(num_threads=1, prefetch_buffer_size=16) \
        if isinstance(self.train_source, InMemorySource) else grain.ReadOptions()
    return iter(self.train_batches.to_iter_dataset(options))


def build_experiment(config: ml_collections.ConfigDict, mesh: Mesh | None = None) -> Experiment:
  """Task, data, model, train state and jitted steps of `config` on `mesh` (default:
  `config.local_devices` of each process, 0 for all; on CPU, as many as divide the
  batch sizes)."""
  mesh = mesh or mesh_lib.mesh_for_batches(config.batch_size, config.eval_batch_size,
                                           local_devices=config.get("local_devices", 0))
  spec = datasets.spec(config.dataset.name)
  task = make_task(config, spec.num_classes)
  train_src, train_ds, eval_ds, total_steps = input_pipelines(config, mesh, task)
  task = task.setup(train_src)  # e.g. YOLO's anchors: deterministic from the data
  model = build_model(config, task)
  tx, schedule = make_optimizer(config.optimizer, config.schedule, total_steps)
  graphdef, state = create_train_state(model, tx, jax.random.key(config.seed + 1))
  del model
  repl, data_sharding = mesh_lib.replicated(mesh), mesh_lib.data_sharded(mesh)
  train_step = jit_train_step(graphdef, tx, task, mesh, schedule)
  eval_step = jax.jit(make_eval_step(graphdef, task), in_shardings=(repl, data_sharding),
                      out_shardings=repl)
  return Experiment(mesh, task, train_src, train_ds, eval_ds, total_steps, graphdef,
                    jax.device_put(state, repl), train_step, eval_step)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains `config` in `workdir` (resuming if a checkpoint is there); returns final metrics."""
  workdir = ensure_writable(workdir)
  if jax.process_index() == 0:
    paths.write_atomic(paths.join(workdir, "config.json"),
                       config.to_json_best_effort(indent=2, sort_keys=True))
  exp = build_experiment(config)
  mesh, task, state, total_steps = exp.mesh, exp.task, exp.state, exp.total_steps
  train_step, eval_step, eval_ds = exp.train_step, exp.eval_step, exp.eval_batches
  if jax.process_index() == 0:
    paths.write_atomic(paths.join(workdir, "task.json"),
                       json.dumps({"task": config.task, **dataclasses.asdict(task)}, indent=2))
  data_iter = exp.train_iterator()

  checkpointer = Checkpointer(paths.join(workdir, "checkpoints"),
                              max_to_keep=config.keep_checkpoints)
  pending = []  # per-step metrics not yet logged; saved with checkpoints between log steps
  restored = checkpointer.restore(abstract_like(state))
  if restored is not None:
    state, data_state, saved_step = restored
    data_iter.set_state(data_state["iterator"])
    pending = data_state["pending_metrics"]
    logging.info("Resumed from the checkpoint at step %d.", saved_step)
  step = int(state.step)
  last_saved = step

  writer = MetricsWriter(workdir, resume_step=step)
  progress = Progress(total_steps, step, config.log_every_steps)
  logging.info("Training %s on %s for %d steps (batch %d) on %d %s device(s).",
               config.model.name, config.dataset.name, total_steps, config.batch_size,
               mesh.size, jax.default_backend())
  final = {}
  checked_step = step  # every step up to here had a finite loss

  def check_finite(host_pending: list[dict]) -> None:
    nonlocal checked_step
    if any(m["nonfinite"] for m in host_pending):
      good = checkpointer.latest_step()
      raise NonFiniteLossError(
          f"the training loss became NaN or inf between steps {checked_step + 1} and {step}; "
          f"stopped without saving. Last good checkpoint: "
          f"{'none' if good is None else f'step {good}'} in {checkpointer.directory}. "
          "Lower the learning rate or add gradient clipping (optimizer.grad_clip_norm).")
    checked_step = step

  def host_pending() -> list[dict]:
    """Fetches the pending metrics (one sync) and proves every step's loss finite."""
    nonlocal pending
    pending = [{k: float(v) for k, v in m.items()} for m in jax.device_get(pending)]
    check_finite(pending)
    return pending

  def flush() -> dict:
    nonlocal pending
    if not pending:
      return {}
    summary = _summarise(host_pending())
    pending = []
    summary.pop("nonfinite")
    return summary

  def save() -> None:
    nonlocal last_saved
    checkpointer.save(step, state, {"iterator": data_iter.get_state(),
                                    "pending_metrics": host_pending()})
    last_saved = step

  def flush_and_log() -> None:
    summary = flush()
    if summary:
      writer.write(step, summary)
      final.update(summary)
      writer.write(step, {"perf/steps_per_sec": progress.update(step, summary)},
                   to_jsonl=False)

  try:
    with _StopFlag() as stop:
      start = time.perf_counter()
      while step < total_steps and not stop.requested:
        batch = mesh_lib.global_batch(next(data_iter), mesh)
        state, metrics = train_step(state, batch)
        pending.append(metrics)
        step += 1
        if step % config.log_every_steps == 0:
          flush_and_log()
        if step % config.eval_every_steps == 0 or step == total_steps:
          flush_and_log()
          batches = (mesh_lib.global_batch(b, mesh) for b in eval_ds)
          results = dict(task.evaluate(eval_step, state, batches))
          writer.write(step, results)
          final.update(results)
          logging.info("step %d  %s", step, "  ".join(f"{k}={v:.4f}" for k, v in
                                                        results.items()))
        if step % config.checkpoint_every_steps == 0 or step == total_steps:
          save()
      if step != last_saved:  # stopped early by SIGTERM
        save()
      elapsed = time.perf_counter() - start
  finally:
    progress.close()
    writer.close()
    checkpointer.close()
  if jax.process_index() == 0:
    records = read_metrics(paths.join(workdir, "metrics.jsonl"))
    plot_curves(records, paths.join(workdir, "curves.png"),
                f"{config.model.name} on {config.dataset.name}", metric=task.headline)
  logging.info("Stopped at step %d/%d after %.1fs of training.", step, total_steps, elapsed)
  return {"step": step, **final}
