"""What a config trains with, built but not run: data pipelines, task, model, train
state and jitted steps (`build_experiment`). The loop (`cnn_lab.train.loop`), the
benchmarks and the tools that restore a run all build through here."""

from __future__ import annotations

import dataclasses

import grain
import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx
from jax.sharding import Mesh

from cnn_lab.data import datasets
from cnn_lab.data.order import per_class_indices
from cnn_lab.data.in_memory import InMemorySource
from cnn_lab.data.pipeline import (Preprocess, SelectKeys, Subset,
                                   eval_dataset, train_dataset)
from cnn_lab.errors import fail
from cnn_lab.models import check_name, create_model, model_options
from cnn_lab.pretrained.imagenet import load_pretrained
from cnn_lab.train import mesh as mesh_lib
from cnn_lab.train.configs import validate
from cnn_lab.train.optim import make_optimizer
from cnn_lab.train.phases import Phases
from cnn_lab.train.state import TrainState, create_train_state
from cnn_lab.train.steps import jit_train_steps, make_eval_step
from cnn_lab.train.tasks import Task, make_task


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
  if total < 1:
    raise fail("num_epochs", f"enough for one step ({len(train_src)} training records make "
               f"{steps_per_epoch} batches of {config.batch_size} an epoch)", config.num_epochs)
  return train_src, train, evaluation, total


COMPUTE_DTYPES = ("float32", "bfloat16")


def compute_dtype(config: ml_collections.ConfigDict):
  """`config.compute_dtype`: None for float32 (no casts), else the dtype activations and
  matmuls run in (parameters, optimizer state and batch statistics stay float32)."""
  name = config.get("compute_dtype", "float32")
  if name not in COMPUTE_DTYPES:
    raise fail("compute_dtype", f"one of {COMPUTE_DTYPES}", name)
  return None if name == "float32" else jnp.dtype(name)


# model keywords a run sets from its dataset and compute dtype, not from `config.model`
SUPPLIED = ("num_classes", "in_channels", "input_size", "dtype")


def check_model_keys(model: ml_collections.ConfigDict) -> None:
  """Refuses a `config.model` key the family does not take (it would be dropped or end
  in a TypeError), listing the keys it takes."""
  options = model_options(model.name)
  if options is None:
    return
  takes = [k for k in options if k not in SUPPLIED]
  for key in model:
    if key not in ("name", "weights") and (key not in options or key in SUPPLIED):
      raise fail(f"model.{key}", f"a key {model.name} takes ({', '.join(takes)})",
                 model[key])


def build_model(config: ml_collections.ConfigDict, task, *, abstract: bool = False
                ) -> nnx.Module:
  """The model a config trains, initialised from `config.seed`, with `model.weights`
  ("imagenet" or a .pth path) loaded into its ImageNet base. `abstract`: shapes only,
  no weights read (for a caller about to restore a checkpoint into it). Callers check
  `config.model`'s keys first (`check_model_keys`), before any data is prepared."""
  spec = datasets.spec(config.dataset.name)
  kwargs = {"num_classes": spec.num_classes, "in_channels": spec.image_shape[-1],
            "input_size": config.dataset.image_size,
            **({"dtype": dtype} if (dtype := compute_dtype(config)) is not None else {}),
            **{k: v for k, v in config.model.items() if k not in ("name", "weights")},
            **task.model_kwargs()}  # e.g. segmentation's classes are the mask's, not the spec's
  model = create_model(config.model.name, rngs=nnx.Rngs(config.seed), abstract=abstract,
                       **kwargs)
  weights = config.model.get("weights", "")
  if weights and not abstract:
    load_pretrained(model, weights)
  return model


@dataclasses.dataclass
class Experiment:
  """Everything a config trains with, built but not run: the loop's and the benchmarks'."""
  mesh: Mesh
  task: Task
  train_source: object
  train_batches: object  # grain dataset of this host's numpy batches
  eval_batches: object
  total_steps: int
  graphdef: object
  state: TrainState  # replicated over `mesh`
  # jitted (state, global batches stacked [n, batch, ...]) -> (state, metrics [n]): n
  # steps in one dispatch (`steps.jit_train_steps`); donates the state
  train_steps: object
  eval_step: object  # jitted (state, global batch) -> task.eval_batch sums
  steps_per_dispatch: int = 1

  def train_iterator(self):
    """This host's training batches, checkpointable (`get_state` / `set_state`).

    In-memory batches are one gather each: a single prefetch thread keeps ahead of the
    step, while grain's default 16 threads only contend for the GIL (3-4x slower);
    record reads and decoding release it and keep the default.
    """
    options = grain.ReadOptions(num_threads=1, prefetch_buffer_size=16) \
        if isinstance(self.train_source, InMemorySource) else grain.ReadOptions()
    return iter(self.train_batches.to_iter_dataset(options))


def build_experiment(config: ml_collections.ConfigDict, mesh: Mesh | None = None,
                     phases: Phases | None = None) -> Experiment:
  """Task, data, model, train state and jitted steps of `config` on `mesh` (default:
  `config.local_devices` of each process, 0 for all; on CPU, as many as divide the
  batch sizes). Values (`configs.validate`), names (dataset, task, model) and the model's
  keys (`check_model_keys`) are checked before any data is prepared. `phases` times
  the data and the model (the launcher's closing line)."""
  phases = phases or Phases()
  validate(config)
  spec = datasets.spec(config.dataset.name)
  task = make_task(config, spec.num_classes)
  check_name(config.model.name, "model.name")
  check_model_keys(config.model)
  mesh = mesh or mesh_lib.mesh_for_batches(config.batch_size, config.eval_batch_size,
                                           local_devices=config.get("local_devices", 0))
  repl, data_sharding = mesh_lib.replicated(mesh), mesh_lib.data_sharded(mesh)
  with phases("data"):
    train_src, train_ds, eval_ds, total_steps = input_pipelines(config, mesh, task)
    task = task.setup(train_src)  # e.g. YOLO's anchors: deterministic from the data
  with phases("model"):
    model = build_model(config, task)
    tx, schedule = make_optimizer(config.optimizer, config.schedule, total_steps)
    graphdef, state = create_train_state(model, tx, jax.random.key(config.seed + 1))
    del model
    state = jax.device_put(state, repl)
  train_steps = jit_train_steps(graphdef, tx, task, mesh, schedule)
  eval_step = jax.jit(make_eval_step(graphdef, task), in_shardings=(repl, data_sharding),
                      out_shardings=repl)
  return Experiment(mesh, task, train_src, train_ds, eval_ds, total_steps, graphdef,
                    state, train_steps, eval_step,
                    config.steps_per_dispatch)
