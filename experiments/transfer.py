r"""Few-shot transfer learning: linear head, fine-tuned and from-scratch MobileNetV2.

  python -m experiments.transfer --workdir=/tmp/transfer [--shots=5,10,20] \
      [--variants=linear,finetune,scratch] [--steps=300]

Each (variant, shots) pair is one run of `experiments/configs/transfer_shapes.py`
through the launcher in WORKDIR/<variant>_<shots>, on the same labelled subset per
shot count; prints the table of test accuracy and wall time and writes
WORKDIR/transfer.json. Relaunching reuses finished runs (they resume at their end).
"""

import json
import os
import time

from absl import flags, logging

from cnn_lab.benchmarks.report import format_table
from cnn_lab.benchmarks.timing import machine
from cnn_lab.data import datasets
from cnn_lab.train import launch
from cnn_lab.train.launch import load_config
from cnn_lab.train.loop import stopped_short, train_and_evaluate

CONFIG = os.path.join(os.path.dirname(__file__), "configs", "transfer_shapes.py")
flags.DEFINE_string("workdir", None, "Where the runs and transfer.json go.")
flags.DEFINE_list("shots", ["5", "10", "20"], "Labelled images per class.")
flags.DEFINE_list("variants", ["linear", "finetune", "scratch"], "Presets of the config.")
flags.DEFINE_integer("steps", 300, "Training steps per run.")
flags.DEFINE_string("preset", "", "Extra presets for every run (e.g. 'test').")
flags.mark_flags_as_required(["workdir"])
FLAGS = flags.FLAGS


def main(argv):
  del argv
  rows = []
  for shots in (int(s) for s in FLAGS.shots):
    for variant in FLAGS.variants:
      config = load_config(f"{CONFIG}:{','.join(p for p in (variant, FLAGS.preset) if p)}")
      config.dataset.train_per_class = shots
      config.num_train_steps = config.eval_every_steps = config.checkpoint_every_steps = \
          FLAGS.steps
      start = time.perf_counter()
      result = train_and_evaluate(config, os.path.join(FLAGS.workdir, f"{variant}_{shots}"))
      if stopped_short(result):  # a SIGTERM: saved; stop, not the next run
        logging.warning("%s_%d stopped at step %d; the same command resumes there.", variant,
                        shots, result["step"])
        return
      rows.append({"shots_per_class": shots, "variant": variant,
                   "train_images": shots * datasets.spec(config.dataset.name).num_classes,
                   "test_accuracy": result["eval/accuracy"],
                   "wall_s": time.perf_counter() - start})
      print(format_table(rows[-1:]), flush=True)
  print(format_table(rows))
  with open(os.path.join(FLAGS.workdir, "transfer.json"), "w") as f:
    json.dump({"machine": machine(), "steps": FLAGS.steps, "rows": rows}, f, indent=2)


if __name__ == "__main__":
  launch.run(main)
