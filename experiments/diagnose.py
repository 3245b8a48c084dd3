r"""What every layer of a config's model does to one training batch: output statistics
per layer call and gradient norms per parameter (`cnn_lab.train.diagnose`).

  python -m experiments.diagnose --config=experiments/configs/mobilenet_shapes.py:scratch \
      [--steps=100] [--out=/tmp/mobilenet_diagnosis.json]

`--steps`: train that many steps of the config's recipe first (0: at initialisation).
Prints the loss, the layer table (name, kind, output shape, mean, std, fraction of
zeros), the parameter table (|w|, |g|, |g|/|w|) and a two-line summary; `--out`
writes the same as JSON. Nothing is written to a workdir.
"""

import dataclasses
import json

from absl import flags, logging
from ml_collections import config_flags

from cnn_lab.errors import fail
from cnn_lab.train import launch
from cnn_lab.train import mesh as mesh_lib
from cnn_lab.train.diagnose import format_layers, format_params, layer_statistics
from cnn_lab.train.experiment import build_experiment

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Config file, optionally with :presets.",
                                lock_config=True)
flags.DEFINE_integer("steps", 0, "Training steps before the diagnosis (0: at init).")
flags.DEFINE_string("out", None, "Also write the tables as JSON here.")
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


def main(argv):
  del argv
  if FLAGS.steps < 0:
    raise fail("--steps", "0 or more training steps", FLAGS.steps)
  exp = build_experiment(FLAGS.config)
  batches, state = exp.train_iterator(), exp.state
  for _ in range(FLAGS.steps):
    stacked = mesh_lib.stack_batches([next(batches)])
    state, _ = exp.train_steps(state, mesh_lib.global_batch(stacked, exp.mesh, stacked=True))
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
                 "layers": [dataclasses.asdict(s) for s in layers],
                 "params": [{**dataclasses.asdict(p), "ratio": p.ratio} for p in params]},
                f, indent=1)


if __name__ == "__main__":
  launch.run(main)
