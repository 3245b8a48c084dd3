r"""The one launcher for every training task; the task comes from the config.

  python -m experiments.train --config=experiments/configs/lenet5_digits.py \
      --workdir=/tmp/lenet5 [--config.optimizer.learning_rate=0.01]

Presets follow a colon (`--config=...lenet5_digits.py:test`). Relaunching with the
same workdir resumes from its last checkpoint; a relaunch with a changed config is
refused naming the changes (`--resume_with_changes` accepts a new learning rate,
schedule or length; `--start_over` sets the previous run aside). docs/reliability.md
says what every failure does.

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
flags.DEFINE_bool("resume_with_changes", False, "Resume although the config changed "
                  "the learning rate, schedule, weight decay, length or evaluation (keys "
                  "that shape the checkpoint or the data order can never change).")
flags.DEFINE_bool("start_over", False, "Move the workdir's previous run (checkpoints, "
                  "metrics, TensorBoard) into previous_run_N/ and train from step 0.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  del argv
  launch.initialize_distributed(FLAGS.coordinator_address, FLAGS.num_processes,
                                FLAGS.process_id, FLAGS.distributed)
  train_and_evaluate(FLAGS.config, FLAGS.workdir,  # logs the final metrics
                     resume_with_changes=FLAGS.resume_with_changes,
                     start_over=FLAGS.start_over)


if __name__ == "__main__":
  launch.run(main)
