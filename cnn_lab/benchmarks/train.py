"""Training throughput of zoo presets: images/s, achieved GFLOP/s, MFU, compile time, memory.

The step timed is the launcher's own (`cnn_lab.train.steps.jit_train_steps`: the loop's
shardings, a donated state, `steps_per_dispatch` steps a call) on random data already
on the devices, so the figure is the model's training speed, not the input
pipeline's (the `data` suite measures that). FLOPs come from the MAC counter
(`cnn_lab.models.summary`): a training step counts as 3 forward passes, 2 FLOPs
per multiply-add. MFU divides by a float32 matmul peak measured in the same run.
`call_ms` times a call of no work with the step's own arguments: the dispatch that
more steps a call can save.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from cnn_lab.benchmarks.timing import median_seconds
from cnn_lab.models import create_model
from cnn_lab.models.summary import summarize
from cnn_lab.train import mesh as mesh_lib
from cnn_lab.train.state import create_train_state
from cnn_lab.train.steps import jit_dispatch, jit_train_steps
from cnn_lab.train.tasks.classification import Classification

# model, image size, channels, batch, classes, implementation, steps per dispatch (the
# `peers` suite times the first two too). ResNet-56: the degradation experiment's
# deepest network, with the longest residual streams (`ops.materialize`). MobileNetV2
# runs its depthwise layers as its configs do, on the scratch taps: XLA's grouped
# convolution is 2-7x slower forward+backward on a CPU (README "Performance"). LeNet-5
# runs twice, 1 and 10 steps a call: the shortest step, where a dispatch counts most
# (`call_share`: 0.4-1.6% of a step on 2 CPU cores; not measured on a GPU, where the
# step takes ~0.45 ms).
CASES = (("lenet5_modern", 32, 1, 128, 10, "xla", 1),
         ("lenet5_modern", 32, 1, 128, 10, "xla", 10),
         ("resnet20_cifar", 32, 3, 128, 10, "xla", 1),
         ("resnet56_cifar", 32, 3, 128, 10, "xla", 1),
         ("mobilenet_v2", 224, 3, 32, 1000, "scratch", 1),
         ("resnet50", 224, 3, 32, 1000, "xla", 1))
QUICK_CASES = (("lenet5_modern", 32, 1, 16, 10, "xla", 1),
               ("lenet5_modern", 32, 1, 16, 10, "xla", 4),
               ("resnet20_cifar", 16, 3, 8, 10, "xla", 1))
LEARNING_RATE, MOMENTUM = 0.01, 0.9  # SGD, here and for the peers


def matmul_peak_gflops(n: int = 2048, repeats: int = 5) -> float:
  """float32 `[n, n] @ [n, n]` GFLOP/s on the default device: the machine's limit for MFU."""
  a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
  b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
  f = jax.jit(jnp.dot)
  return 2 * n ** 3 / median_seconds(f, a, b, repeats=repeats) / 1e9


def seconds_per_step(train_step, state, batch: dict, steps: int = 5, repeats: int = 5) -> float:
  """Median over `repeats` runs of `steps` chained steps (the state is donated and
  threaded through), after 2 warm-up runs; per step."""
  def run():
    nonlocal state
    for _ in range(steps):
      state, metrics = train_step(state, batch)
    return metrics

  return median_seconds(run, repeats=repeats) / steps


def seconds_per_call(state, batches: dict, mesh, calls: int = 50, repeats: int = 5) -> float:
  """Per-call time of a program that takes what the training step takes (the state,
  donated as the step donates it, and the stacked batches sharded as the loop shards
  them) and only counts the step: what one dispatch costs, so the most that several
  steps a call can save. Median over `repeats` runs of `calls` chained calls, after 2
  warm-up runs. Works on a copy: the caller's `state` stays usable."""
  state = jax.tree.map(lambda x: x.copy(), state)

  def count_step(state, batches):
    return state.replace(step=state.step + 1), {"label": batches["label"][:, 0]}

  return seconds_per_step(jit_dispatch(count_step, mesh), state, batches, calls, repeats)


def train_flops_per_image(model: str, size: int, channels: int, classes: int) -> float:
  """3 forward passes x 2 FLOPs per MAC (the counter's convolution and dense MACs)."""
  return 6.0 * summarize(model, (size, size, channels), classes)["macs"]


def host_batch(batch: int, size: int, channels: int, classes: int) -> dict:
  """Random float32 images `[batch, size, size, channels]` and int32 labels, in numpy."""
  rng = np.random.default_rng(0)
  return {"image": rng.normal(size=(batch, size, size, channels)).astype(np.float32),
          "label": rng.integers(0, classes, batch).astype(np.int32)}


def preset_train_step(model: str, size: int, channels: int, classes: int, mesh,
                      impl: str = "xla", dtype=None) -> tuple:
  """-> (the launcher's jitted classification step, its replicated initial state) for a
  zoo preset, with SGD (learning rate 0.01, momentum 0.9) as in every framework timed."""
  net = create_model(model, rngs=nnx.Rngs(0), num_classes=classes, in_channels=channels,
                     input_size=size, impl=impl, dtype=dtype)
  tx = optax.sgd(LEARNING_RATE, momentum=MOMENTUM)
  graphdef, state = create_train_state(net, tx, jax.random.key(1))
  return (jit_train_steps(graphdef, tx, Classification(), mesh),
          jax.device_put(state, mesh_lib.replicated(mesh)))


def time_train_step(model: str, size: int, channels: int, batch: int, classes: int,
                    impl: str = "xla", *, steps: int = 5, repeats: int = 5, dtype=None,
                    mesh=None, steps_per_dispatch: int = 1) -> dict:
  """Compiles and times one preset's training step (SGD with momentum, like the peers),
  `steps_per_dispatch` of them a call.

  -> {"compile_s", "step_s" (median over `repeats` runs of `steps` dispatches, after 2
  warm-up ones, per training step), "images_per_s", "memory_mb" (XLA's estimate:
  arguments, outputs and temporaries of the compiled call), "call_s" (what the call
  itself costs: `seconds_per_call`, same arguments, no work)}.
  """
  mesh = mesh or mesh_lib.make_mesh()
  mesh_lib.check_batch_divides(batch, mesh)
  step_fn, state = preset_train_step(model, size, channels, classes, mesh, impl, dtype)
  local = host_batch(batch, size, channels, classes)
  data = mesh_lib.global_batch(mesh_lib.stack_batches([local] * steps_per_dispatch), mesh,
                               stacked=True)
  start = time.perf_counter()
  compiled = step_fn.lower(state, data).compile()
  compile_s = time.perf_counter() - start
  memory = compiled.memory_analysis()
  memory_mb = None if memory is None else (
      memory.argument_size_in_bytes + memory.output_size_in_bytes
      + memory.temp_size_in_bytes - memory.alias_size_in_bytes) / 2 ** 20

  call_s = seconds_per_call(state, data, mesh)  # before the steps donate `state`
  step_s = seconds_per_step(compiled, state, data, steps, repeats) / steps_per_dispatch
  return {"compile_s": compile_s, "step_s": step_s, "images_per_s": batch / step_s,
          "memory_mb": memory_mb, "call_s": call_s}


def suite(quick: bool = False, peak_gflops: float | None = None):
  """Yields one row per case: images/s, GFLOP/s, MFU against the measured matmul peak."""
  peak = peak_gflops or matmul_peak_gflops(512 if quick else 2048)
  devices = jax.device_count()
  for model, size, channels, batch, classes, impl, k in (QUICK_CASES if quick else CASES):
    big = size >= 128  # seconds per step on a CPU: fewer, still repeated, timings
    timing = time_train_step(model, size, channels, batch, classes, impl,
                             steps=2 if quick or big else 5, repeats=3 if quick or big else 5,
                             steps_per_dispatch=k)
    gflops = train_flops_per_image(model, size, channels, classes) * timing["images_per_s"] / 1e9
    yield {"suite": "train", "model": model, "impl": impl, "input": f"{size}x{size}x{channels}",
           "batch": batch, "steps_per_dispatch": k, "devices": devices,
           "images_per_s": timing["images_per_s"],
           "gflops": gflops, "mfu": gflops / peak, "matmul_peak_gflops": peak,
           "compile_s": timing["compile_s"], "memory_mb": timing["memory_mb"],
           # what one call costs, as a share of the time a call takes: the most that
           # more steps a call can save is this share (k = 1 at most 1 / (1 - share))
           "call_ms": 1e3 * timing["call_s"],
           "call_share": timing["call_s"] / (k * timing["step_s"])}
