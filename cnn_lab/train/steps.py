"""Pure train and eval steps of `(state, batch)`, over a graphdef closed over at build time.

They run under `jax.jit` with explicit shardings (see `cnn_lab.train.mesh`); the
model is rebuilt with `nnx.merge` inside the trace, so the hot loop does no
Python graph traversal.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from cnn_lab.train import mesh as mesh_lib
from cnn_lab.train.state import TrainState


def float32_outputs(outputs):
  """Model outputs in float32 before losses and metrics (bfloat16 compute keeps only
  ~3 significant digits, too few for a softmax or a sum over an evaluation split)."""
  return jax.tree.map(lambda x: x.astype(jnp.float32)
                      if jnp.issubdtype(x.dtype, jnp.floating) else x, outputs)


STREAMS = ("augment", "dropout", "sampling", "mining")


def step_keys(key, step) -> dict:
  """The named random streams of one training step, all from (run key, step), so a
  resumed run draws what an uninterrupted one would:

    augment   the task's on-device augmentation (`task.augment`)
    dropout   the model's dropout layers
    sampling  what a model samples in training (Faster R-CNN's anchors and RoIs)
    mining    what a loss draws (random triplets)

  `augment` and `dropout` are the two halves of the step key (as they were before the
  others had names: runs of earlier versions reproduce); the others fold in their index.
  """
  step_key = jax.random.fold_in(key, step)
  augment, dropout = jax.random.split(step_key)
  return {"augment": augment, "dropout": dropout,
          **{name: jax.random.fold_in(step_key, i) for i, name in enumerate(STREAMS) if i > 1}}


def training_loss(graphdef, task, params, batch_stats, batch: dict, keys: dict):
  """The loss of an (augmented) training batch in train mode (batch statistics, the
  step's dropout and sampling `keys`) -> (loss, metrics, the model it ran)."""
  # copy=True: fresh Variables at this trace level, so BatchNorm may update its
  # statistics under jax.grad (flax >= 0.11.2 reuses the outer ones otherwise).
  model = nnx.merge(graphdef, params, batch_stats, copy=True)
  rngs = nnx.Rngs(dropout=keys["dropout"], sampling=keys["sampling"])
  outputs = float32_outputs(model(batch["image"], train=True, rngs=rngs,
                                  **task.train_inputs(batch)))
  loss, metrics = task.loss(outputs, batch, keys["mining"])
  return loss, metrics, model


def make_train_step(graphdef, tx: optax.GradientTransformation, task, schedule=None):
  """-> train_step(state, batch) -> (state, metrics), metrics scalars incl. `nonfinite`."""

  def train_step(state: TrainState, batch: dict):
    keys = step_keys(state.key(), state.step)
    batch = task.augment(batch, keys["augment"])

    def loss_fn(params, batch_stats):
      loss, metrics, model = training_loss(graphdef, task, params, batch_stats, batch, keys)
      return loss, (metrics, nnx.state(model, nnx.BatchStat))

    (loss, (metrics, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state.params, state.batch_stats)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = {**metrics, "nonfinite": jnp.logical_not(jnp.isfinite(loss)).astype(jnp.int32)}
    if schedule is not None:
      metrics["learning_rate"] = schedule(state.step)
    new_state = state.replace(step=state.step + 1, params=params, batch_stats=batch_stats,
                              opt_state=opt_state)
    return new_state, metrics

  return train_step


def jit_dispatch(fn, mesh):
  """`fn(state, batches) -> (state, metrics)` jitted as the loop calls a dispatch: the
  state replicated over `mesh` and donated, the batches stacked `[n, batch, ...]` and
  sharded along the batch axis, the metrics replicated. The training steps use it, and
  the `train` benchmark's call of no work, so that it costs what their call costs."""
  repl = mesh_lib.replicated(mesh)
  return jax.jit(fn, in_shardings=(repl, mesh_lib.data_sharded(mesh, stacked=True)),
                 out_shardings=(repl, repl), donate_argnums=0)


def jit_train_steps(graphdef, tx: optax.GradientTransformation, task, mesh, schedule=None):
  """n training steps in one jitted call, as the loop runs them: `make_train_step`
  applied to each of the batches stacked `[n, batch, ...]` (sharded along the batch
  axis) in turn -> (state, metrics stacked `[n]`); the state replicated over `mesh`
  and donated. One program per distinct n (the configured `steps_per_dispatch`, and
  a shorter one for a run's last steps).

  The steps are written out one after the other, not as a loop: XLA:CPU runs a step
  3-8x slower inside a loop body. Written out, n steps are the same steps as n calls
  of one step; bitwise for LeNet-5, to float rounding where XLA fuses one step's
  update chains (Adam's moments, BatchNorm's running statistics) into the next's
  (README, "Steps per dispatch"). The price is compile time growing with n."""
  step = make_train_step(graphdef, tx, task, schedule)

  def train_steps(state, batches):
    metrics = []
    for i in range(jax.tree.leaves(batches)[0].shape[0]):
      state, m = step(state, jax.tree.map(lambda b, i=i: b[i], batches))
      metrics.append(m)
    return state, jax.tree.map(lambda *m: jnp.stack(m), *metrics)

  return jit_dispatch(train_steps, mesh)


def make_eval_step(graphdef, task):
  """-> eval_step(state, batch) -> `task.eval_batch` of the outputs (e.g. sums over the
  unmasked examples, or detections)."""

  def eval_step(state: TrainState, batch: dict):
    model = nnx.merge(graphdef, state.params, state.batch_stats, copy=True)
    return task.eval_batch(float32_outputs(model(batch["image"], train=False)), batch)

  return eval_step
