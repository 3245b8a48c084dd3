r"""Trains a config once per seed and reports final accuracy and wall time per run.

  python -m experiments.seeds --config=experiments/configs/lenet5_digits.py \
      --seeds=0,1,2 --workdir=/tmp/lenet5_seeds [--out=benchmarks/results/lenet5_digits.json]

Each run is a fresh process with a fresh data dir and an empty compilation cache: its
wall time includes data preparation and compilation. Extra `--config.*` flags pass through.
"""

import os
import shutil
import sys

from absl import flags

from cnn_lab.benchmarks.report import format_table, save_json
from cnn_lab.benchmarks.seeds import parse_seeds, run_seed, summary
from cnn_lab.benchmarks.timing import machine
from cnn_lab.train import launch

flags.DEFINE_string("config", None, "Config file (with :presets).")
flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds to run.")
flags.DEFINE_string("workdir", None, "Parent folder; one sub-folder per seed.")
flags.DEFINE_string("out", "benchmarks/results/seeds.json", "Where the JSON goes.")
flags.mark_flags_as_required(["config", "workdir"])
FLAGS = flags.FLAGS


def main(argv):
  del argv
  passthrough = [a for a in sys.argv[1:] if a.startswith("--config.")]
  rows = []
  for seed in parse_seeds(FLAGS.seeds):
    workdir = os.path.join(FLAGS.workdir, f"seed{seed}")
    shutil.rmtree(workdir, ignore_errors=True)  # a measurement starts from nothing
    rows.append(run_seed(FLAGS.config, workdir, seed, passthrough))
    print(format_table(rows[-1:]), flush=True)
  rows.append(summary(rows))
  print(f"\n{FLAGS.config} {' '.join(passthrough)}\n{format_table(rows)}")
  print(f"wrote {save_json(FLAGS.out, {'machine': machine(), 'config': FLAGS.config, 'flags': passthrough, 'runs': rows})}")


if __name__ == "__main__":
  launch.run(main, flags_parser=lambda argv: flags.FLAGS(
      [a for a in argv if not a.startswith("--config.")]))
