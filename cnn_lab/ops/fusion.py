"""Steering XLA's fusion where its CPU heuristics cost more than they save."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def materialize(x: jax.Array) -> jax.Array:
  """`x` (any shape), unchanged, computed once into its own buffer on XLA:CPU.

  XLA's fusion pass copies a cheap elementwise producer into every consumer that
  reads it. On a residual stream, `y_k = relu(F(y_{k-1}) + y_{k-1})`, each block's
  output is such a producer, so every consumer of `y_k` in the training step (the
  next block's convolution, the backward ReLU masks) recomputes the chain
  `y_1 ... y_k` from the stage's convolution outputs: work that grows with the square
  of a stage's blocks (ResNet-56's step took 1.8x, ResNet-110's 2.5x, what it takes
  with this; README "Performance"). The pass never duplicates an "expensive"
  instruction, and a division is one: so `x` is divided by a one that XLA cannot fold
  away (`optimization_barrier` alone does not help: XLA:CPU removes barriers before it
  fuses). `x / 1` is exact in IEEE arithmetic and so is its gradient; XLA:CPU flushes
  subnormals to zero here as in every arithmetic op. The step's results stay those
  without it up to the order XLA sums a reduction in (bit for bit for the ResNets,
  MobileNets and EfficientNet-B0 at batch 64, 32x32 and 64x64; one BatchNorm
  gradient 1 ulp apart at 8x8, batch 4). Other platforms fuse by their own cost
  models: there `x` is returned as it is.
  """
  def divide_by_opaque_one(x):
    return x / jax.lax.optimization_barrier(jnp.ones((), x.dtype))
  return jax.lax.platform_dependent(x, cpu=divide_by_opaque_one, default=lambda x: x)
