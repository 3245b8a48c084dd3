"""A trained run back from its workdir, for inference tools (detect, predict, visualize)."""

from __future__ import annotations

import dataclasses
import json
import os

import jax
import ml_collections
import numpy as np
from flax import nnx

from cnn_lab.data import datasets
from cnn_lab.data.pipeline import Preprocess
from cnn_lab.errors import fail
from cnn_lab.train.checkpoint import Checkpointer, UnreadableCheckpointsError, abstract_like
from cnn_lab.train.experiment import build_model, check_model_keys
from cnn_lab.train.optim import make_optimizer
from cnn_lab.train.state import abstract_train_state
from cnn_lab.train.tasks import Task, make_task
from cnn_lab.train.workdir import holds_checkpoint


@dataclasses.dataclass
class TrainedRun:
  config: ml_collections.ConfigDict
  task: Task
  model: nnx.Module  # in evaluation use: call with train=False
  step: int


def eval_images(run: TrainedRun, count: int):
  """`count` images of the run's evaluation split (repeating if short), preprocessed as in
  training: float32 `[count, S, S, C]`, e.g. to time inference."""
  cfg = run.config.dataset
  preprocess = Preprocess.for_dataset(cfg)
  source = datasets.evaluation_source(cfg)
  return np.stack([preprocess.one({"image": source[i % len(source)]["image"]})["image"]
                   for i in range(count)])


def detector(run: TrainedRun):
  """-> (jitted `detect(state, images [N, S, S, C])` -> `run.task.predict`'s dict, state)."""
  graphdef, state = nnx.split(run.model)
  return jax.jit(lambda state, x: run.task.predict(nnx.merge(graphdef, state)(x))), state


def embedder(run: TrainedRun):
  """-> (jitted `embed(state, images [N, S, S, C])` -> embeddings `[N, D]`, state), for a
  metric-learning run."""
  graphdef, state = nnx.split(run.model)
  return jax.jit(lambda state, x: nnx.merge(graphdef, state)(x)["embedding"]), state


def load_run(workdir: str) -> TrainedRun:
  """Rebuilds config, task (with what it fitted, e.g. anchors) and model; restores the
  latest readable checkpoint of `workdir`. Reads only: nothing in the workdir is
  written, renamed or deleted, whatever state it is in."""
  workdir = os.path.abspath(os.path.expanduser(workdir))
  paths = {name: os.path.join(workdir, f"{name}.json") for name in ("config", "task")}
  for path in paths.values():
    if not os.path.exists(path):
      raise fail("workdir", f"a training workdir holding {os.path.basename(path)}", workdir)
  with open(paths["config"]) as f:
    config = ml_collections.ConfigDict(json.load(f))
  with open(paths["task"]) as f:
    saved = json.load(f)
  task = make_task(config, datasets.spec(config.dataset.name).num_classes).with_fitted(saved)
  check_model_keys(config.model)
  model = build_model(config, task, abstract=True)  # the checkpoint holds every value
  tx, _ = make_optimizer(config.optimizer, config.schedule, 1)
  graphdef, state = abstract_train_state(model, tx)
  if not holds_checkpoint(workdir):
    raise fail("workdir", "a workdir with a checkpoint", workdir)
  checkpointer = Checkpointer(os.path.join(workdir, "checkpoints"), read_only=True)
  try:
    restored = checkpointer.restore(abstract_like(state))
  except UnreadableCheckpointsError as e:
    raise UnreadableCheckpointsError(f"{e}; does {paths['config']} still describe the run "
                                     "that wrote them?") from e
  finally:
    checkpointer.close()
  state, _, step = restored
  model = nnx.merge(graphdef, state.params, state.batch_stats)
  return TrainedRun(config, task, model, step)
