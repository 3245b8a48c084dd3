r"""Prints a model's layer table: activation shapes and sizes, parameters, MACs.

  python -m experiments.summary --model=resnet50 [--input_shape=224,224,3] \
      [--num_classes=1000] [--json]
  python -m experiments.summary --all   # docs/zoo.md

Nothing is allocated (jax.eval_shape). `--json` prints one JSON object with
`params`, `macs` and the rows.
"""

import dataclasses
import json

from absl import flags

from cnn_lab.errors import fail
from cnn_lab.models.summary import default_classes, format_summary, summarize, zoo_markdown
from cnn_lab.train import launch

flags.DEFINE_string("model", None, "A registered model name.")
flags.DEFINE_bool("all", False, "A markdown table of every preset (parameters, MACs).")
flags.DEFINE_list("input_shape", None, "H,W,C (default: the preset's own).")
flags.DEFINE_integer("num_classes", None, "Classes of the output layer (default: the "
                     "preset's own: 1000 for ImageNet models, 10 for CIFAR/LeNet, ...).")
flags.DEFINE_bool("json", False, "Print one JSON object instead of the table.")
FLAGS = flags.FLAGS


def main(argv):
  del argv
  if FLAGS.all:
    print(zoo_markdown())
    return
  if not FLAGS.model:
    raise fail("--model", "a registered model name (or --all)", FLAGS.model)
  try:
    shape = tuple(int(v) for v in FLAGS.input_shape) if FLAGS.input_shape else None
  except ValueError:
    shape = ()
  if shape is not None and (len(shape) != 3 or min(shape) < 1):
    raise fail("--input_shape", "H,W,C, three positive integers", ",".join(FLAGS.input_shape))
  if FLAGS.num_classes is not None and FLAGS.num_classes < 1:
    raise fail("--num_classes", "a positive number of classes", FLAGS.num_classes)
  classes = FLAGS.num_classes if FLAGS.num_classes is not None else \
      default_classes(FLAGS.model)
  summary = summarize(FLAGS.model, shape, classes)
  if FLAGS.json:
    print(json.dumps({**summary, "rows": [dataclasses.asdict(r) for r in summary["rows"]]}))
  else:
    print(format_summary(summary))


if __name__ == "__main__":
  launch.run(main)
