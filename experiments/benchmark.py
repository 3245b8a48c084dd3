r"""Benchmarks: prints a table per suite and writes JSON.

  python -m experiments.benchmark [SUITE...] [--quick] [--out=benchmarks/results/bench.json]

Suites: ops (scratch vs xla: conv, transpose conv, max pooling; forward and
forward+backward GFLOP/s). Timings exclude compilation and warm-up and are the
median of repeated runs; the machine is described in the output.
"""

from absl import app, flags

from cnn_lab.benchmarks import ops as ops_suite
from cnn_lab.benchmarks.report import format_table, save_json
from cnn_lab.benchmarks.timing import machine

SUITES = {"ops": ops_suite.suite}

flags.DEFINE_bool("quick", False, "Small sizes, for a smoke test.")
flags.DEFINE_string("out", "benchmarks/results/bench.json", "Where the JSON goes.")
FLAGS = flags.FLAGS


def main(argv):
  names = argv[1:] or list(SUITES)
  unknown = [n for n in names if n not in SUITES]
  if unknown:
    raise app.UsageError(f"suite: expected some of {sorted(SUITES)}, received {unknown}")
  info = machine()
  print(f"machine: {info['cpu']}, {info['cores']} cores, backend {info['backend']}, "
        f"{len(info['devices'])} device(s), jax {info['jax']}")
  print("GFLOP/s: 2 FLOPs per multiply-add; forward+backward counted as 3 forward passes.")
  results = {"machine": info, "suites": {}}
  for name in names:
    rows = list(SUITES[name](quick=FLAGS.quick))
    results["suites"][name] = rows
    print(f"\n[{name}]")
    print(format_table(rows))
  print(f"\nwrote {save_json(FLAGS.out, results)}")


if __name__ == "__main__":
  app.run(main)
