"""The same LeNet-5 and ResNet-20 trained by peers: Keras 3 on JAX, and Flax Linen as
Flax's examples write it; ours timed beside them in the same process.

Every framework trains the same architecture (modern LeNet-5: ReLU, max pooling;
He et al.'s CIFAR ResNet-20 with option-A shortcuts, BatchNorm momentum 0.9 and
epsilon 1e-5) with the same optimizer (SGD, learning rate 0.01, momentum 0.9) on
the same host batch, fed from numpy each step as a training loop feeds it. One
timed "step" is what each framework's own loop does per batch: ours is the
launcher's (`global_batch` + jitted, donated `train_steps`, one step a dispatch); Keras's is
`model.train_on_batch`; Flax's examples' is `jax.jit(train_step)` on a Linen
`TrainState`.
"""

from __future__ import annotations

import importlib.util
import os
import statistics
import time

import jax
import jax.numpy as jnp
import optax

from cnn_lab.benchmarks.train import LEARNING_RATE, MOMENTUM, host_batch, preset_train_step
from cnn_lab.errors import fail
from cnn_lab.train import mesh as mesh_lib

# ours, image size, channels, batch, classes
CASES = (("lenet5_modern", 32, 1, 128, 10), ("resnet20_cifar", 32, 3, 128, 10))
QUICK_CASES = (("lenet5_modern", 32, 1, 16, 10),)  # the tests: one model is enough


# ---------------------------------------------------------------------------- ours

def ours_step(model: str, size: int, channels: int, classes: int, images, labels, mesh):
  """-> step(): one launcher training step from the host batch (returns its metrics)."""
  train_step, state = preset_train_step(model, size, channels, classes, mesh)
  local = {"image": images, "label": labels}

  def step():
    nonlocal state
    batches = mesh_lib.global_batch(mesh_lib.stack_batches([local]), mesh, stacked=True)
    state, metrics = train_step(state, batches)
    return metrics

  return step


# --------------------------------------------------------------------------- Keras

def keras_installed() -> bool:
  """Whether Keras is installed, without importing it (that takes seconds): the one
  check of the suites that run it (here, and `time_to_accuracy` in a subprocess)."""
  return importlib.util.find_spec("keras") is not None


def _keras():
  """Keras 3 on its JAX backend, or None when it is not installed."""
  backend = os.environ.setdefault("KERAS_BACKEND", "jax")
  if backend != "jax":
    raise fail("KERAS_BACKEND", "'jax' for the peers suite", backend)
  if not keras_installed():
    return None
  import keras
  return keras


def keras_model(keras, model: str, size: int, channels: int, classes: int):
  layers = keras.layers
  inputs = keras.Input((size, size, channels))
  if model == "lenet5_modern":
    x = layers.Conv2D(6, 5, activation="relu")(inputs)
    x = layers.MaxPooling2D(2)(x)
    x = layers.Conv2D(16, 5, activation="relu")(x)
    x = layers.MaxPooling2D(2)(x)
    x = layers.Flatten()(x)
    x = layers.Dense(120, activation="relu")(x)
    x = layers.Dense(84, activation="relu")(x)
    return keras.Model(inputs, layers.Dense(classes)(x))
  if model != "resnet20_cifar":
    raise fail("model", "'lenet5_modern' or 'resnet20_cifar'", model)

  def conv_bn(x, width, stride=1, relu=True):
    x = layers.Conv2D(width, 3, stride, padding="same", use_bias=False)(x)
    x = layers.BatchNormalization(momentum=0.9, epsilon=1e-5)(x)
    return layers.ReLU()(x) if relu else x

  def shortcut_a(x, width, stride):  # subsample, append zero channels
    extra = width - x.shape[-1]
    return layers.Lambda(lambda t: keras.ops.pad(
        t[:, ::stride, ::stride, :], ((0, 0), (0, 0), (0, 0), (extra // 2, extra - extra // 2))))(x)

  x = conv_bn(inputs, 16)
  for i, width in enumerate((16, 32, 64)):
    for j in range(3):
      stride = 2 if i > 0 and j == 0 else 1
      y = conv_bn(conv_bn(x, width, stride), width, relu=False)
      skip = x if stride == 1 and x.shape[-1] == width else shortcut_a(x, width, stride)
      x = layers.ReLU()(layers.Add()([y, skip]))
  x = layers.GlobalAveragePooling2D()(x)
  return keras.Model(inputs, layers.Dense(classes)(x))


def keras_step(keras, model: str, size: int, channels: int, classes: int, images, labels):
  net = keras_model(keras, model, size, channels, classes)
  net.compile(optimizer=keras.optimizers.SGD(LEARNING_RATE, momentum=MOMENTUM),
              loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
              jit_compile=True)
  return lambda: net.train_on_batch(images, labels)


# ---------------------------------------------------------------------- Flax Linen

def linen_model(model: str, classes: int):
  """The Linen module, written as Flax's examples write theirs."""
  import flax.linen as lnn

  class LeNet5(lnn.Module):
    @lnn.compact
    def __call__(self, x, train: bool = True):
      x = lnn.max_pool(lnn.relu(lnn.Conv(6, (5, 5), padding="VALID")(x)), (2, 2), (2, 2))
      x = lnn.max_pool(lnn.relu(lnn.Conv(16, (5, 5), padding="VALID")(x)), (2, 2), (2, 2))
      x = x.reshape((x.shape[0], -1))
      x = lnn.relu(lnn.Dense(84)(lnn.relu(lnn.Dense(120)(x))))
      return lnn.Dense(classes)(x)

  class ResNet20(lnn.Module):
    @lnn.compact
    def __call__(self, x, train: bool = True):
      norm = lambda: lnn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5)
      conv = lambda w, s=1: lnn.Conv(w, (3, 3), (s, s), padding="SAME", use_bias=False)
      x = lnn.relu(norm()(conv(16)(x)))
      for i, width in enumerate((16, 32, 64)):
        for j in range(3):
          stride = 2 if i > 0 and j == 0 else 1
          y = lnn.relu(norm()(conv(width, stride)(x)))
          y = norm()(conv(width)(y))
          if stride != 1 or x.shape[-1] != width:
            extra = width - x.shape[-1]
            x = jnp.pad(x[:, ::stride, ::stride, :],
                        ((0, 0), (0, 0), (0, 0), (extra // 2, extra - extra // 2)))
          x = lnn.relu(x + y)
      return lnn.Dense(classes)(jnp.mean(x, axis=(1, 2)))

  return {"lenet5_modern": LeNet5, "resnet20_cifar": ResNet20}[model]()


def linen_step(model: str, size: int, channels: int, classes: int, images, labels):
  """Flax's examples' pattern: a Linen module, `TrainState` with batch stats, `jax.jit`."""
  from flax.training import train_state

  class State(train_state.TrainState):
    batch_stats: dict

  net = linen_model(model, classes)
  variables = net.init(jax.random.key(0), jnp.zeros((1, size, size, channels)), train=False)
  state = State.create(apply_fn=net.apply, params=variables["params"],
                       batch_stats=variables.get("batch_stats", {}),
                       tx=optax.sgd(LEARNING_RATE, momentum=MOMENTUM))

  @jax.jit
  def train_step(state, images, labels):
    def loss_fn(params):
      logits, updates = state.apply_fn({"params": params, "batch_stats": state.batch_stats},
                                       images, train=True, mutable=["batch_stats"])
      loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
      return loss, updates
    (loss, updates), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    state = state.apply_gradients(grads=grads)
    return state.replace(batch_stats=updates.get("batch_stats", {})), loss

  def step():
    nonlocal state
    state, loss = train_step(state, images, labels)
    return loss

  return step


# --------------------------------------------------------------------------- suite

def images_per_second(steps_by_name: dict, batch: int, steps: int, repeats: int) -> dict:
  """{name: images/s}: after 2 warm-up runs each (compilation), `repeats` rounds in which
  every framework runs `steps` steps in turn; the median per framework. Taking turns
  spreads a busy spell of the machine over all of them instead of one."""
  def run(step):
    start = time.perf_counter()
    out = None
    for _ in range(steps):
      out = step()
    jax.block_until_ready(out)
    return time.perf_counter() - start

  for step in steps_by_name.values():
    run(step), run(step)
  times = {name: [] for name in steps_by_name}
  for _ in range(repeats):
    for name, step in steps_by_name.items():
      times[name].append(run(step))
  return {name: batch * steps / statistics.median(t) for name, t in times.items()}


def suite(quick: bool = False):
  """Yields one row per (model, framework) with images/s and the ratio ours / peer.

  Ours runs on the default mesh (all devices) and on one device; the peers run as
  their users run them, on the default device.
  """
  keras = _keras()
  steps, repeats = (2, 3) if quick else (10, 7)
  for model, size, channels, batch, classes in (QUICK_CASES if quick else CASES):
    data = host_batch(batch, size, channels, classes)
    images, labels = data["image"], data["label"]
    args = (model, size, channels, classes, images, labels)
    all_devices = mesh_lib.make_mesh()
    label = "1 device" if all_devices.size == 1 else f"{all_devices.size} devices"
    speeds = {f"cnn_lab ({label})": ours_step(*args, all_devices)}
    if all_devices.size > 1:
      speeds["cnn_lab (1 device)"] = ours_step(*args, mesh_lib.make_mesh(jax.devices()[:1]))
    speeds["flax linen (examples style)"] = linen_step(*args)
    if keras is not None:
      speeds[f"keras {keras.__version__} (jax)"] = keras_step(keras, *args)
    measured = images_per_second(speeds, batch, steps, repeats)
    ours = next(iter(measured.values()))
    for name, value in measured.items():
      yield {"suite": "peers", "model": model, "batch": batch, "framework": name,
             "images_per_s": value, "ours_over_this": ours / value}
    if keras is None:
      yield {"suite": "peers", "model": model, "batch": batch,
             "framework": "keras: not installed (pip install -e '.[bench]')",
             "images_per_s": float("nan"), "ours_over_this": float("nan")}
