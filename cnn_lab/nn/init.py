"""Weight initialisers equal, bit for bit, to `jax.nn.initializers`', compiled once per
size bucket instead of once per parameter shape.

Building a model eagerly compiles one random-number program per distinct parameter
shape (about 80 ms each on 2 CPU cores): GoogLeNet's construction was 22 of its 24 s.
JAX's threefry (partitionable, its default) draws element i of an array from (key, i)
alone, so the first n values of a flat draw of m >= n elements, reshaped, are the draw of
any shape of n elements. Sizes are rounded up to a power of two, at least `MIN_DRAW`:
one program serves every parameter up to 64K elements (LeNet-5's five kernels compiled
five, ~0.14 s each, for draws that take well under a millisecond: the quick start's model
building went from 0.9-1.0 s to 0.4 s), and any model needs at most 9 sizes, 2^16 to
2^24. Above `EXACT_ABOVE` elements a draw is made at its own size, so a large dense layer
never needs twice its memory. The scaling is done in numpy in float32 with
the operations JAX uses (IEEE square root, division and product round the same
everywhere). Another dtype, or threefry set non-partitionable, falls back to JAX's
own initialiser: the values stay those of flax's defaults either way
(`tests/test_models.py` checks them against JAX's).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from cnn_lab.errors import fail

MIN_DRAW = 1 << 16
EXACT_ABOVE = 1 << 24
TRUNCATED_STD = .87962566103423978  # of a standard normal truncated to (-2, 2): JAX's


@functools.partial(jax.jit, static_argnums=(1, 2))
def _flat_draw(key, size: int, distribution: str):
  """float32 `[size]` standard draws of `distribution` (truncated to (-2, 2) or not)."""
  if distribution == "truncated_normal":
    return jax.random.truncated_normal(key, -2, 2, (size,), jnp.float32)
  return jax.random.normal(key, (size,), jnp.float32)


def _bucketed(key, shape: tuple, distribution: str, dtype) -> np.ndarray | None:
  """float32 numpy `shape`: the standard draw JAX makes for `shape` with `key`; None where
  it would not be JAX's (another dtype, threefry non-partitionable) or cannot be read
  (under `jax.jit` or `nnx.eval_shape`, where JAX's own ops are traced instead)."""
  if np.dtype(dtype or jnp.float32) != np.float32 or not jax.config.jax_threefry_partitionable:
    return None
  n = math.prod(shape)
  draw = _flat_draw(key, n if n > EXACT_ABOVE else max(MIN_DRAW, 1 << (n - 1).bit_length()),
                    distribution)
  if isinstance(draw, jax.core.Tracer):
    return None
  return np.asarray(draw)[:n].reshape(shape)


def variance_scaling(scale: float, mode: str, distribution: str):
  """`jax.nn.initializers.variance_scaling(scale, mode, distribution)`, kernels
  `[..., in, out]`; bucketed for `mode` fan_in or fan_out and a (truncated) normal
  `distribution`, JAX's own initialiser for the others."""
  reference = jax.nn.initializers.variance_scaling(scale, mode, distribution)
  if mode not in ("fan_in", "fan_out") or distribution not in ("normal", "truncated_normal"):
    return reference

  def init(key, shape, dtype=jnp.float32):
    shape = tuple(shape)
    draw = _bucketed(key, shape, distribution, dtype) if len(shape) >= 2 else None
    if draw is None:
      return reference(key, shape, dtype)
    receptive = math.prod(shape) / shape[-2] / shape[-1]
    denominator = (shape[-2] if mode == "fan_in" else shape[-1]) * receptive
    std = np.sqrt(np.float32(scale / denominator))
    if distribution == "truncated_normal":
      std = std / np.float32(TRUNCATED_STD)
    return jax.device_put(draw * std)
  return init


def normal(stddev: float = 1e-2):
  """`jax.nn.initializers.normal(stddev)`."""
  reference = jax.nn.initializers.normal(stddev)

  def init(key, shape, dtype=jnp.float32):
    draw = _bucketed(key, tuple(shape), "normal", dtype)
    return reference(key, shape, dtype) if draw is None else \
        jax.device_put(draw * np.float32(stddev))
  return init


def constant(value: float):
  """`jax.nn.initializers.constant(value)`, made on the host (no program compiled)."""
  def init(key, shape, dtype=jnp.float32):
    del key
    return jnp.full(tuple(shape), value, dtype) if _tracing() else \
        jax.device_put(np.full(tuple(shape), value, np.dtype(dtype or jnp.float32)))
  return init


def _tracing() -> bool:
  return isinstance(jnp.zeros(()), jax.core.Tracer)


def symmetric_uniform(bound: float):
  """U(-bound, bound), as PyTorch's `nn.init.uniform_(w, -bound, bound)`."""
  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, tuple(shape), dtype, -bound, bound)
  return init


lecun_normal = functools.partial(variance_scaling, 1.0, "fan_in", "truncated_normal")
he_normal = functools.partial(variance_scaling, 2.0, "fan_in", "truncated_normal")
zeros, ones = constant(0.0), constant(1.0)

FAMILY_INITS = ("torchvision", "lecun", "he")


def family_inits(name: str, classifier, choices: tuple = FAMILY_INITS) -> tuple:
  """(convolution, classifier) kernel initialisers of a model family's `init` option.

  "torchvision": as torchvision's MobileNet and EfficientNet files initialise, the
  convolutions `kaiming_normal_(mode="fan_out")`, std sqrt(2 / (O * kh * kw)), which for
  a depthwise 3x3 kernel counts every output channel (9C: C = 144 gives 0.039, where fan-in
  gives 0.33), and the classifier `classifier`; "lecun": flax's default for both (lecun
  normal, fan-in). From random weights MobileNet v1 on `shapes` (seed 0, 12 epochs) reaches
  0.978 with the first and 0.866 with the second (`mobilenet_shapes.py`); "he": He et
  al. 2015's (the CIFAR ResNets' paper cites it), N(0, 2 / fan-in) for every kernel, the
  classifier's included. `choices`: the names a family takes (others are refused).
  """
  if name not in choices:
    raise fail("init", f"one of {choices}", name)
  if name == "torchvision":
    return variance_scaling(2.0, "fan_out", "normal"), classifier
  if name == "lecun":
    return lecun_normal(), lecun_normal()
  he = variance_scaling(2.0, "fan_in", "normal")
  return he, he
