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


def make_train_step(graphdef, tx: optax.GradientTransformation, task, schedule=None):
  """-> train_step(state, batch) -> (state, metrics), metrics scalars incl. `nonfinite`."""

  def train_step(state: TrainState, batch: dict):
    key = jax.random.fold_in(state.key(), state.step)  # same step, same randomness
    k_aug, k_dropout = jax.random.split(key)
    batch = task.augment(batch, k_aug)

    def loss_fn(params, batch_stats):
      # copy=True: fresh Variables at this trace level, so BatchNorm may update its
      # statistics under jax.grad (flax >= 0.11.2 reuses the outer ones otherwise).
      model = nnx.merge(graphdef, params, batch_stats, copy=True)
      outputs = float32_outputs(model(batch["image"], train=True,
                                      rngs=nnx.Rngs(dropout=k_dropout),
                                      **task.train_inputs(batch)))
      loss, metrics = task.loss(outputs, batch)
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


def jit_train_step(graphdef, tx: optax.GradientTransformation, task, mesh, schedule=None):
  """`make_train_step` jitted as the loop runs it: state replicated over `mesh` and
  donated, batches sharded along `data`."""
  repl = mesh_lib.replicated(mesh)
  return jax.jit(make_train_step(graphdef, tx, task, schedule),
                 in_shardings=(repl, mesh_lib.data_sharded(mesh)), out_shardings=(repl, repl),
                 donate_argnums=0)


def make_eval_step(graphdef, task):
  """-> eval_step(state, batch) -> `task.eval_batch` of the outputs (e.g. sums over the
  unmasked examples, or detections)."""

  def eval_step(state: TrainState, batch: dict):
    model = nnx.merge(graphdef, state.params, state.batch_stats, copy=True)
    return task.eval_batch(float32_outputs(model(batch["image"], train=False)), batch)

  return eval_step
