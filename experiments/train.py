r"""The one launcher for every training task; the task comes from the config.

  python -m experiments.train --config=experiments/configs/lenet5_digits.py \
      --workdir=/tmp/lenet5 [--config.optimizer.learning_rate=0.01]

Presets follow a colon (`--config=...lenet5_digits.py:test`). Relaunching with the
same workdir resumes from its last checkpoint.
"""

from absl import flags, logging
from ml_collections import config_flags

from cnn_lab.train import launch
from cnn_lab.train.loop import train_and_evaluate

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Config file, optionally with :presets.",
                                lock_config=True)
flags.DEFINE_string("workdir", None, "Where checkpoints, metrics and figures go.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  del argv
  result = train_and_evaluate(FLAGS.config, FLAGS.workdir)
  logging.info("Final: %s", {k: round(v, 5) if isinstance(v, float) else v
                             for k, v in result.items()})


if __name__ == "__main__":
  launch.run(main)
