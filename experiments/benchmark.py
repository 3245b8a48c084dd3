r"""Benchmarks: prints a table per suite and writes JSON.

  python -m experiments.benchmark [SUITE...] [--quick] [--out=benchmarks/results/bench.json]

Without SUITE: every suite but time_to_accuracy (~40 minutes on 2 cores), run by name.

Suites:
  train  training images/s of LeNet-5, ResNet-20 (batch 128, 32x32), MobileNetV2 and
         ResNet-50 (batch 32, 224x224); achieved GFLOP/s and MFU against a float32
         matmul peak measured in the same run; compile time; XLA's memory estimate; what
         one call costs (a call of no work with the step's arguments) and its share of a call.
  peers  the same LeNet-5 and ResNet-20 in Keras 3 (JAX backend) and in Flax Linen as
         Flax's examples write it, timed beside ours (`pip install -e '.[bench]'`).
  ops    scratch vs xla: conv, transpose conv, max pooling; IoU and NMS at 1,000 and
         10,000 boxes (beside `tf.image.non_max_suppression` when TensorFlow is installed).
  data   input pipeline examples/s against what each config's training step consumes.
  time_to_accuracy
         the real MNIST end to end, seeds 0, 1, 2: Flax's and Keras's MNIST examples and
         ours, each a fresh process; seconds from process start to 99.0% test accuracy
         (evaluated every 100 steps), to the end, final accuracy, peak memory.

Except time_to_accuracy, timings exclude compilation and warm-up and are medians of repeated runs. On CPU the
process gets one XLA device per core (as the launcher does); ours runs on all of them.
"""

import functools
import os

from absl import flags, logging

from cnn_lab.benchmarks import data as data_suite
from cnn_lab.benchmarks import ops as ops_suite
from cnn_lab.benchmarks import peers as peers_suite
from cnn_lab.benchmarks import time_to_accuracy as tta_suite
from cnn_lab.benchmarks import train as train_suite
from cnn_lab.benchmarks.report import format_table, save_json
from cnn_lab.benchmarks.timing import machine
from cnn_lab.errors import fail
from cnn_lab.train import launch

CONFIGS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")
DATA_CONFIGS = {False: ("lenet5_digits.py", "resnet_shapes.py", "yolo_shapes.py"),
                True: ("lenet5_digits.py:test", "resnet_shapes.py:test")}

LONG = ("time_to_accuracy",)  # minutes per run: only when named

flags.DEFINE_bool("quick", False, "Small sizes, for a smoke test.")
flags.DEFINE_string("out", "benchmarks/results/bench.json", "Where the JSON goes.")
FLAGS = flags.FLAGS


def suites(quick: bool) -> dict:
  data_configs = tuple(os.path.join(CONFIGS, c) for c in DATA_CONFIGS[quick])
  return {"train": train_suite.suite, "peers": peers_suite.suite, "ops": ops_suite.suite,
          "data": functools.partial(data_suite.suite, configs=data_configs),
          "time_to_accuracy": tta_suite.suite}


def main(argv):
  logging.set_verbosity(logging.WARNING)  # the tables, not TFDS's dataset-info chatter
  available = suites(FLAGS.quick)
  names = argv[1:] or [n for n in available if n not in LONG]
  unknown = [n for n in names if n not in available]
  if unknown:
    raise fail("suite", f"some of {sorted(available)}", unknown)
  info = machine()
  if "train" in names:
    info["matmul_peak_gflops"] = train_suite.matmul_peak_gflops(512 if FLAGS.quick else 2048)
  print(f"machine: {info['cpu']}, {info['cores']} cores, backend {info['backend']}, "
        f"{len(info['devices'])} device(s) ({info['device_kind']}), jax {info['jax']}"
        + (f", float32 matmul peak {info['matmul_peak_gflops']:.0f} GFLOP/s"
           if "matmul_peak_gflops" in info else ""))
  print("GFLOP/s: 2 FLOPs per multiply-add; a training step (forward+backward) counts as "
        "3 forward passes. MFU: achieved / matmul peak.")
  results = {"machine": info, "suites": {}}
  for name in names:
    kwargs = {"peak_gflops": info["matmul_peak_gflops"]} if name == "train" else {}
    print(f"\n[{name}]", flush=True)
    rows = []
    for row in available[name](quick=FLAGS.quick, **kwargs):
      rows.append(row)
      if name in LONG:  # minutes apart: each row as it comes, and saved as it comes
        print(format_table([row]).splitlines()[-1], flush=True)
        save_json(FLAGS.out, {**results, "suites": {**results["suites"], name: rows}})
    results["suites"][name] = rows
    print(format_table(rows))
  if "train" in names:  # a busy or throttled machine shows as a peak that moved
    info["matmul_peak_gflops_end"] = train_suite.matmul_peak_gflops(512 if FLAGS.quick else 2048)
    drift = info["matmul_peak_gflops_end"] / info["matmul_peak_gflops"] - 1
    print(f"\nmatmul peak at the end: {info['matmul_peak_gflops_end']:.0f} GFLOP/s "
          f"({drift:+.0%} from the start)"
          + ("; the machine was not steady, rerun before quoting" if abs(drift) > 0.1 else ""))
  print(f"\nwrote {save_json(FLAGS.out, results)}")


if __name__ == "__main__":
  launch.run(main)
