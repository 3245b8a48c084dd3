"""`ops.materialize`: the identity, bit for bit, that XLA:CPU computes once."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from cnn_lab import ops
from cnn_lab.models import create_model
from tests.helpers import normal


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_materialize_is_the_identity_bit_for_bit_and_so_is_its_gradient(dtype):
  """x / 1 is exact in IEEE arithmetic: NaN, infinities and -0 included. (Subnormals
  are not tried: XLA:CPU flushes them to zero in every arithmetic op, a ReLU's too, so
  none reaches a block's output.)"""
  x = jnp.array([np.nan, np.inf, -np.inf, -0.0, 0.0, 1e-30, -3.5, 7e30], dtype)
  y = jax.jit(ops.materialize)(x)
  assert y.dtype == x.dtype
  np.testing.assert_array_equal(np.asarray(y).view(np.uint8), np.asarray(x).view(np.uint8))
  w = normal(0, (8,)).astype(dtype)
  grad = jax.jit(jax.grad(lambda x: (ops.materialize(x) * w).sum().astype(jnp.float32)))
  np.testing.assert_array_equal(np.asarray(grad(x)).view(np.uint8),
                                np.asarray(w).view(np.uint8))


def largest_fusion(f, *args) -> int:
  """Instructions in the largest fused computation XLA compiled `jax.jit(f)` into."""
  text = jax.jit(f).lower(*args).compile().as_text()
  bodies = re.split(r"\n(?=\S)", text)
  return max(b.count("\n") for b in bodies if b.startswith("%fused"))


def residual_stream(materialize, ws, x):
  """A block `relu(BN(conv(x)) + x)` per kernel in `ws` ([3, 3, C, C] each; x [N, H, W, C]),
  then the sum of squares of the last output: a residual stream's training shape."""
  for w in ws:
    y = jax.lax.conv_general_dilated(x, w, (1, 1), "SAME",
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"))
    y = (y - y.mean((0, 1, 2))) * jax.lax.rsqrt(y.var((0, 1, 2)) + 1e-5)
    x = materialize(jax.nn.relu(y + x))
  return (x * x).sum()


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="XLA:CPU's fusion pass")
def test_materialize_stops_xla_cpu_recomputing_a_residual_stream_in_every_consumer():
  """Without it the gradient's largest fusion grows with the blocks (each recomputes the
  stream from the convolutions' outputs); with it, it does not. If the first assertion
  fails, XLA:CPU no longer duplicates, and the division `materialize` adds can go."""
  x = normal(9, (2, 8, 8, 4))

  def largest(materialize, blocks: int) -> int:
    ws = [normal(i, (3, 3, 4, 4)) * 0.1 for i in range(blocks)]
    return largest_fusion(jax.grad(lambda ws: residual_stream(materialize, ws, x)), ws)

  assert largest(lambda x: x, 6) > largest(lambda x: x, 3)
  assert largest(ops.materialize, 6) == largest(ops.materialize, 3)


def test_materialize_leaves_a_resnets_loss_and_gradients_as_they_were(monkeypatch):
  """ResNet-20's training loss and gradients with the blocks' outputs materialized are
  those without, to float32 rounding: XLA may sum a reduction over a materialized buffer
  in another order (bit for bit at the sizes the README measures; one BatchNorm bias
  gradient 1 ulp apart at 8x8, batch 4)."""
  model = create_model("resnet20_cifar", rngs=nnx.Rngs(0), num_classes=8)
  graphdef, state = nnx.split(model)
  x, labels = normal(1, (4, 16, 16, 3)), jnp.arange(4) % 8

  def loss(state):
    logits = nnx.merge(graphdef, state)(x, train=True)
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

  with_it = jax.jit(jax.value_and_grad(loss))(state)
  monkeypatch.setattr(ops, "materialize", lambda x: x)
  without = jax.jit(jax.value_and_grad(loss))(state)
  for a, b in zip(jax.tree.leaves(with_it), jax.tree.leaves(without)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-7)
