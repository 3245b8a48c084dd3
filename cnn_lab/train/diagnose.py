"""Why a recipe trains badly: what every layer does to one training batch.

`layer_statistics` runs one training step's forward pass (train mode: batch
statistics, the step's dropout, the task's augmentation) and its backward pass, and
returns for every layer call the mean and standard deviation of its output and the
fraction of exact zeros in it, and for every parameter the norm of its value and of
its gradient. Their ratio |g| / |w| is how far a plain gradient step of learning rate 1
would move the parameter relative to its size: layers whose ratio is orders of
magnitude below the others' barely learn, whatever the optimiser's global rate.
`experiments.diagnose` prints both tables for a config, at initialisation or after a
few steps, and writes them as JSON.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from cnn_lab.nn import module_paths, recording
from cnn_lab.train.steps import step_keys, training_loss


@dataclasses.dataclass
class LayerStat:
  """One layer call's output `[batch, *shape]` over the batch."""
  name: str
  kind: str
  shape: tuple[int, ...]
  mean: float
  std: float
  zeros: float  # fraction of exact zeros (dead ReLUs show up in the next layer's input)


@dataclasses.dataclass
class ParamStat:
  name: str
  shape: tuple[int, ...]
  norm: float
  grad_norm: float

  @property
  def ratio(self) -> float:
    return self.grad_norm / self.norm if self.norm else float("inf")


def layer_statistics(graphdef, state, batch: dict, task, step: int = 0
                     ) -> tuple[float, list[LayerStat], list[ParamStat]]:
  """(loss, layer outputs in call order, parameters in model order) of training `state`
  on `batch` (host arrays), with the random streams of step `step`."""
  described: list[tuple[str, str, tuple[int, ...]]] = []

  def loss_and_stats(params):
    keys = step_keys(state.key(), step)
    augmented = task.augment(batch, keys["augment"])
    with recording() as calls:
      loss, _, model = training_loss(graphdef, task, params, state.batch_stats, augmented,
                                     keys)
    names = module_paths(model)
    described[:] = [(names.get(id(c.module), "?"), c.kind, c.out_shape[1:]) for c in calls]
    outputs = [c.output.astype(jnp.float32) for c in calls]
    return loss, [(jnp.mean(y), jnp.std(y), jnp.mean(y == 0)) for y in outputs]

  (loss, stats), grads = jax.jit(jax.value_and_grad(loss_and_stats, has_aux=True))(
      state.params)
  layers = [LayerStat(name, kind, shape, *map(float, s))
            for (name, kind, shape), s in zip(described, jax.device_get(stats))]
  params = [ParamStat("/".join(map(str, path)), tuple(w.shape), float(np.linalg.norm(w[...])),
                      float(np.linalg.norm(g[...])))
            for (path, w), (_, g) in zip(nnx.to_flat_state(state.params),
                                         nnx.to_flat_state(grads))]
  return float(loss), layers, params


def format_layers(layers: list[LayerStat]) -> str:
  rows = [f"{'layer':<44} {'kind':<18} {'output':<16} {'mean':>9} {'std':>9} {'zeros':>6}"]
  rows += [f"{s.name[-44:]:<44} {s.kind:<18} {str(s.shape):<16} {s.mean:9.3g} {s.std:9.3g} "
           f"{s.zeros:6.2f}" for s in layers]
  return "\n".join(rows)


def format_params(params: list[ParamStat]) -> str:
  rows = [f"{'parameter':<52} {'shape':<20} {'|w|':>9} {'|g|':>9} {'|g|/|w|':>9}"]
  rows += [f"{p.name[-52:]:<52} {str(p.shape):<20} {p.norm:9.3g} {p.grad_norm:9.3g} "
           f"{p.ratio:9.3g}" for p in params]
  return "\n".join(rows)
