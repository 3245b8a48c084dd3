r"""The one launcher for every training task; the task comes from the config.

  python -m experiments.train --config=experiments/configs/lenet5_digits.py \
      --workdir=/tmp/lenet5 [--config.optimizer.learning_rate=0.01]

Presets follow a colon (`--config=...lenet5_digits.py:test`). Relaunching with the
same workdir resumes from its last checkpoint.

Multi-host (one process per host, the same command on each):
  python -m experiments.train --config=... --workdir=gs://BUCKET/run \
      --coordinator_address=HOST0:1234 --num_processes=4 --process_id=$I
or `--distributed` where JAX detects the cluster itself (Cloud TPU pod slices, SLURM).
"""

from absl import flags
from ml_collections import config_flags

from cnn_lab.train import launch
from cnn_lab.train.loop import train_and_evaluate

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Config file, optionally with :presets.",
                                lock_config=True)
flags.DEFINE_string("workdir", None, "Where checkpoints, metrics and figures go.")
flags.DEFINE_string("coordinator_address", "", "Multi-host: host:port of process 0 "
                    "(default: $JAX_COORDINATOR_ADDRESS; empty: a single process).")
flags.DEFINE_integer("num_processes", 0, "Multi-host: the number of processes "
                     "(default: $JAX_NUM_PROCESSES).")
flags.DEFINE_integer("process_id", -1, "Multi-host: this process's index "
                     "(default: $JAX_PROCESS_ID).")
flags.DEFINE_bool("distributed", False, "Multi-host with JAX's cluster detection "
                  "(Cloud TPU pod slices, SLURM, Open MPI).")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  del argv
  launch.initialize_distributed(FLAGS.coordinator_address, FLAGS.num_processes,
                                FLAGS.process_id, FLAGS.distributed)
  train_and_evaluate(FLAGS.config, FLAGS.workdir)  # logs the final metrics


if __name__ == "__main__":
  launch.run(main)
