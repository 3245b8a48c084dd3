r"""What every layer of a config's model does to one training batch: output statistics
per layer call and gradient norms per parameter (`cnn_lab.train.diagnose`).

  python -m experiments.diagnose --config=experiments/configs/mobilenet_shapes.py:scratch \
      [--steps=100] [--out=/tmp/mobilenet_diagnosis.json]

`--steps`: train that many steps of the config's recipe first (0: at initialisation).
Prints the loss, the layer table (name, kind, output shape, mean, std, fraction of
zeros), the parameter table (|w|, |g|, |g|/|w|) and a two-line summary; `--out`
writes the same as JSON. Nothing is written to a workdir.

`--trace` (Adam recipes): also follow how Adam moves each group of kernels over those
steps (`cnn_lab.train.adam_trace`), printed as means over `--trace_every` steps, e.g.
plain-56's stem, blocks and classifier (section 9 of docs/degradation.md splits the
blocks by stage):

  python -m experiments.diagnose --config=experiments/configs/resnet_shapes.py:plain56 \
      --steps=600 --trace --trace_groups='stem=^stem,blocks=^blocks,fc=^fc'
"""

import dataclasses
import functools
import json

import jax
import jax.numpy as jnp

from absl import flags, logging
from ml_collections import config_flags

from cnn_lab.errors import fail
from cnn_lab.train import launch
from cnn_lab.train import mesh as mesh_lib
from cnn_lab.train.adam_trace import (adam_moments, format_trace, kernel_groups,
                                     step_statistics, window_means)
from cnn_lab.train.diagnose import format_layers, format_params, layer_statistics
from cnn_lab.train.experiment import build_experiment

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Config file, optionally with :presets.",
                                lock_config=True)
flags.DEFINE_integer("steps", 0, "Training steps before the diagnosis (0: at init).")
flags.DEFINE_string("out", None, "Also write the tables as JSON here.")
flags.DEFINE_bool("trace", False, "Trace Adam's moments over the --steps (adam_trace).")
flags.DEFINE_integer("trace_every", 50, "Steps a row of the trace averages over.")
flags.DEFINE_list("trace_groups", [], "name=regex on the kernels' names, first match wins "
                  "(default: one group per top-level module).")
flags.mark_flags_as_required(["config"])


def summary_lines(layers, params) -> list[str]:
  """The spread that matters: output scale through depth, and learning speed by layer."""
  lines = []
  if layers:
    stds = [s.std for s in layers]
    lines.append(f"output std: first layer {stds[0]:.3g}, last {stds[-1]:.3g}, "
                 f"range {min(stds):.3g} .. {max(stds):.3g}")
  kernels = [p for p in params if len(p.shape) >= 2 and p.norm > 0]
  if kernels:
    slow, fast = min(kernels, key=lambda p: p.ratio), max(kernels, key=lambda p: p.ratio)
    lines.append(f"|g|/|w| of the weight matrices and kernels: {slow.ratio:.3g} ({slow.name}) "
                 f".. {fast.ratio:.3g} ({fast.name})")
  return lines


def trace_groups(exp) -> dict[str, list[int]]:
  """`--trace_groups` (name=regex items) -> the kernels of each group (`kernel_groups`)."""
  patterns = dict(item.split("=", 1) if "=" in item else (item, "")
                  for item in FLAGS.trace_groups)
  if any(not p for p in patterns.values()):
    raise fail("--trace_groups", "name=regex items", ",".join(FLAGS.trace_groups))
  return kernel_groups(exp.state.params, patterns)


def train_and_trace(exp, batches, steps: int, trace: bool):
  """Trains `steps` steps of `exp`; -> (state, the trace's window means or [], the
  trace's group names)."""
  state, records, groups = exp.state, [], trace_groups(exp) if trace else {}
  opt = FLAGS.config.optimizer
  if trace:
    previous = [jnp.zeros_like(x) for x in jax.tree.leaves(exp.state.params)]
    statistics = jax.jit(functools.partial(step_statistics, groups=groups, b1=opt.b1,
                                           b2=opt.b2))
  for step in range(steps):
    before = jax.tree.map(jnp.copy, adam_moments(state.opt_state)) if trace else None
    stacked = mesh_lib.stack_batches([next(batches)])
    state, metrics = exp.train_steps(state, mesh_lib.global_batch(stacked, exp.mesh,
                                                                  stacked=True))
    if trace:
      stats, previous = statistics(before, adam_moments(state.opt_state), previous)
      records.append({"step": step + 1, "loss": float(metrics["loss"][0]),
                      **jax.device_get(stats)})
      if (step + 1) % FLAGS.trace_every == 0:  # a long trace shows its progress
        window = window_means(records[-FLAGS.trace_every:], FLAGS.trace_every)
        logging.info("Adam's trace, steps %d-%d:\n%s", step + 2 - FLAGS.trace_every, step + 1,
                     format_trace(window, list(groups)))
  return state, window_means(records, FLAGS.trace_every) if records else [], list(groups)


def main(argv):
  del argv
  if FLAGS.steps < 0:
    raise fail("--steps", "0 or more training steps", FLAGS.steps)
  if FLAGS.trace_every <= 0:
    raise fail("--trace_every", "1 or more steps", FLAGS.trace_every)
  exp = build_experiment(FLAGS.config)
  batches = exp.train_iterator()
  state, trace, groups = train_and_trace(exp, batches, FLAGS.steps, FLAGS.trace)
  if trace:
    print(format_trace(trace, groups), "\n")
  logging.info("Diagnosing %s after %d steps.", FLAGS.config.model.name, FLAGS.steps)
  loss, layers, params = layer_statistics(exp.graphdef, state, next(batches), exp.task,
                                          step=FLAGS.steps)
  print(f"{FLAGS.config.model.name} after {FLAGS.steps} steps: training loss {loss:.4g}\n")
  print(format_layers(layers), "\n")
  print(format_params(params), "\n")
  print("\n".join(summary_lines(layers, params)))
  if FLAGS.out:
    with open(FLAGS.out, "w") as f:
      json.dump({"model": FLAGS.config.model.name, "steps": FLAGS.steps, "loss": loss,
                 "trace": trace,
                 "layers": [dataclasses.asdict(s) for s in layers],
                 "params": [{**dataclasses.asdict(p), "ratio": p.ratio} for p in params]},
                f, indent=1)


if __name__ == "__main__":
  launch.run(main)
