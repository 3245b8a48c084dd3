"""Face embeddings: a zoo classifier whose output layer is a `dim`-d embedding,
L2-normalised (FaceNet), applied with shared weights to every image (the Siamese
network: one set of weights, any number of inputs).

Output: {"embedding": `[N, dim]` unit vectors, "pair_weights": `[dim]`, "pair_bias": ()}
-- the last two are the binary-classification variant's logistic unit
sigmoid(sum_k w_k |f(x_i)_k - f(x_j)_k| + b) (`cnn_lab.losses.metric.pair_logits`), unused
by the triplet losses.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx


class Embedder(nnx.Module):
  """`[N, H, W, C]` -> unit embeddings `[N, dim]` (and the pair classifier's parameters).

  `num_classes` is accepted and ignored: identities are not classes here, the
  embedding is what is learned."""

  def __init__(self, *, build_backbone, backbone: str = "resnet20_cifar", dim: int = 128,
               num_classes: int | None = None, in_channels: int = 3, input_size: int = 32,
               impl: str = "xla", dtype=None, rngs: nnx.Rngs):
    """`build_backbone(name, rngs=, **kwargs)`: the registry's `create_model`, which
    passes itself (this family builds another family, and imports none)."""
    del num_classes
    kwargs = {"dtype": dtype} if dtype is not None else {}
    self.net = build_backbone(backbone, rngs=rngs, num_classes=dim, in_channels=in_channels,
                              input_size=input_size, impl=impl, **kwargs)
    self.pair_weights = nnx.Param(jnp.zeros((dim,), jnp.float32))
    self.pair_bias = nnx.Param(jnp.zeros((), jnp.float32))
    self.dim = dim

  def __call__(self, x, *, train: bool = False, rngs=None):
    e = self.net(x, train=train, rngs=rngs)
    f = e.astype(jnp.float32)  # the norm in float32, the result in the compute dtype
    e = (f * jax.lax.rsqrt(jnp.maximum(jnp.sum(f * f, -1, keepdims=True), 1e-12))).astype(
        e.dtype)
    return {"embedding": e, "pair_weights": self.pair_weights[...],
            "pair_bias": self.pair_bias[...]}

