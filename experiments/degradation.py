r"""He et al. 2015's degradation experiment (their Figure 6) on `shapes`: plain-20/56
against ResNet-20/56, the same steps on the same data; one PNG of training and test error
against step, a table and JSON.

  python -m experiments.degradation --workdir=/tmp/degradation [--seeds=0,1,2] \
      [--epochs=30] [--dataset=shapes/multi_64] [--augment] [--recipe=shapes] [--init=lecun] \
      [--learning_rate=5e-4] [--adam_b2=0.999] [--networks=plain-56]

Each network is trained by the one launcher's loop with experiments/configs/resnet_shapes.py
(presets :plain, (none), :plain56, :resnet56), the same seed and data order, on `--dataset`
resized to the networks' 32x32, with the paper's augmentation (`:augment`: shifts of up
to 4 pixels, left-right flips) and the shapes configs' optimisation (`--recipe=shapes`:
AdamW, warm-up + cosine, gradient clipping, at a peak learning rate of 5e-4, a quarter of
those configs' 2e-3) or the paper's (`--recipe=paper`, `:paper`: SGD with momentum 0.9,
learning rate 0.1 divided by 10 at 1/2 and 3/4 of training, which needs far more steps
than a CPU budget gives: docs/degradation.md).

Expected with the defaults (1,860 steps a network, 50-75 minutes a seed on 2 CPU cores),
over seeds 0, 1, 2, the paper's finding: plain-56 learns but trains worse than plain-20,
and ResNet-56 better than ResNet-20 (final training error on an AMD EPYC: plain-20 0.225
+- 0.033, ResNet-20 0.193 +- 0.014, plain-56 0.490 +- 0.040, ResNet-56 0.091 +- 0.020). At
the shapes configs' 2e-3 (`--learning_rate=2e-3`) plain-56 sits at chance for 500-1,100
steps and ended at 0.621 +- 0.155; when it leaves chance varies from run to run, and
between CPUs, whose last float bits differ (docs/degradation.md has the diagnosis, and why
shorter budgets or the easier `single_32` show only part of the finding). Each network is
trained once per seed (`DIR/seed{s}/{network}`) and found trained when run again, so a
sweep can be resumed, extended by seeds, or split: `--networks=plain-56 --seeds=1,2`
first, the rest later.
"""

import dataclasses
import json
import os
import statistics
import time

import ml_collections
from absl import flags, logging

from cnn_lab.benchmarks.report import format_table, save_json
from cnn_lab.benchmarks.seeds import mean_and_sd, parse_seeds
from cnn_lab.benchmarks.timing import machine
from cnn_lab.errors import fail
from cnn_lab.train import launch
from cnn_lab.train.configs import defaults
from cnn_lab.train.launch import load_config
from cnn_lab.train.loop import stopped_short, train_and_evaluate
from cnn_lab.train.metrics import read_metrics
from cnn_lab.viz import plot_training_error

CONFIG = os.path.join(os.path.dirname(__file__), "configs", "resnet_shapes.py")
RUNS = {"plain-20": "plain", "ResNet-20": "", "plain-56": "plain56", "ResNet-56": "resnet56"}
ADAM_B2 = defaults()["optimizer"]["b2"]  # the recipes' (and optax's) 0.999
SHAPES_LEARNING_RATE = 5e-4  # the sweep's default peak for --recipe=shapes (not its 2e-3)


@dataclasses.dataclass(frozen=True)
class Sweep:
  """What every network of one sweep shares (the flags of the same names)."""
  recipe: str = "shapes"
  augment: bool = True
  epochs: float = 30.0
  init: str = "lecun"
  dataset: str = "shapes/multi_64"
  adam_b2: float = ADAM_B2
  learning_rate: float | None = None  # None: SHAPES_LEARNING_RATE, or the paper's 0.1


DEFAULTS = Sweep()

flags.DEFINE_string("workdir", None, "Parent folder; one sub-folder per seed and network.")
flags.DEFINE_float("epochs", DEFAULTS.epochs, "Epochs of --dataset for every network "
                   "(multi_64: 4,000 images, 62 steps of 64 an epoch).")
flags.DEFINE_enum("recipe", DEFAULTS.recipe, ["shapes", "paper"], "The shapes configs' AdamW "
                  "recipe or the paper's SGD one (needs far more steps: docs/degradation.md).")
flags.DEFINE_bool("augment", DEFAULTS.augment, "The paper's augmentation "
                  "(`resnet_shapes.py:augment`: shifts of up to 4 pixels, left-right flips) "
                  "for every network.")
flags.DEFINE_enum("init", DEFAULTS.init, ["lecun", "he"], "The networks' initialisation: flax's "
                  "default (lecun, fan-in) or the paper's (He et al. 2015, N(0, 2 / fan-in)).")
flags.DEFINE_string("dataset", DEFAULTS.dataset, "The task, resized to the CIFAR networks' "
                    "32x32: shapes/multi_64 (1-4 objects, the label the largest's; 4,000 "
                    "training images) keeps ResNet-20 from fitting it; on single_32 both "
                    "ResNets do, and tie.")
flags.DEFINE_float("adam_b2", DEFAULTS.adam_b2, "AdamW's second-moment decay "
                   "(--recipe=shapes), for ablations: 0.99 forgets in ~100 steps, not "
                   "~1,000, but did not get plain-56 off chance sooner (docs/degradation.md, "
                   "section 10).")
flags.DEFINE_float("learning_rate", DEFAULTS.learning_rate, "The peak learning rate for "
                   "every network (unset: 5e-4 with --recipe=shapes, which gets plain-56 off "
                   "chance sooner than the shapes configs' 2e-3, docs/degradation.md section "
                   "11; the paper's 0.1 with --recipe=paper).")
flags.DEFINE_list("seeds", ["0"], "Seeds; every network is trained once per seed, and with "
                  "more than one the table adds each network's mean and spread.")
flags.DEFINE_list("networks", list(RUNS),
                  "The networks to train (all four by default): a long sweep can train the "
                  "one that decides first, e.g. --networks=plain-56 --seeds=1,2.")
flags.mark_flag_as_required("workdir")
FLAGS = flags.FLAGS


def network_config(preset: str, sweep: Sweep) -> ml_collections.ConfigDict:
  """One network's config: resnet_shapes.py with the network's `preset` ("" for
  ResNet-20), `:paper` for the paper's recipe, `:augment` for its augmentation,
  `model.init` set to `sweep.init`, `sweep.dataset` resized to 32x32, AdamW's
  second-moment decay `sweep.adam_b2` (the shapes recipe's; SGD has none: refused with
  `paper` unless 0.999) and the peak `sweep.learning_rate` (None: 5e-4 with the shapes
  recipe, which gets plain-56 off chance within the budget where the config's 2e-3 did
  not on every seed, docs/degradation.md section 11; the paper's 0.1 with its recipe)."""
  if not 0 < sweep.adam_b2 < 1 or (sweep.recipe == "paper" and sweep.adam_b2 != ADAM_B2):
    raise fail("adam_b2", f"a number in (0, 1), and {ADAM_B2} with --recipe=paper (SGD)",
               sweep.adam_b2)
  if sweep.learning_rate is not None and not sweep.learning_rate > 0:
    raise fail("learning_rate", "a positive number (or unset: the sweep's default)",
               sweep.learning_rate)
  presets = [p for p in (preset, sweep.recipe == "paper" and "paper",
                         sweep.augment and "augment") if p]
  config = load_config(f"{CONFIG}:{','.join(presets)}" if presets else CONFIG)
  config.optimizer.b2 = sweep.adam_b2
  if sweep.learning_rate is not None:
    config.optimizer.learning_rate = sweep.learning_rate
  elif sweep.recipe == "shapes":
    config.optimizer.learning_rate = SHAPES_LEARNING_RATE
  config.num_epochs = sweep.epochs
  config.model.init = sweep.init
  config.dataset.update(name=sweep.dataset, image_size=32)
  return config


class Stopped(Exception):
  """A network's run stopped early (SIGTERM): the sweep stops too, to be resumed."""


def train_network(config, workdir: str) -> tuple[dict, list[dict]]:
  """Trains one network (or finds it trained); -> (its table row, its metric records).
  The training error is that of its last tenth of steps (`final_training_error`).
  The row is kept in `workdir/row.json`, so a network found trained keeps the wall time
  of the run that trained it, and one resumed (stopped by SIGTERM) adds both sessions'
  (a long sweep can be resumed or extended by seeds). A stopped run's row has its step
  and wall time only: it may have stopped before its first logged step or evaluation."""
  start = time.perf_counter()
  result = train_and_evaluate(config, workdir)
  row = {"steps": result["step"], "wall_s": time.perf_counter() - start}
  saved = os.path.join(workdir, "row.json")
  if os.path.exists(saved):
    with open(saved) as f:
      before = json.load(f)
    found = before["steps"] == row["steps"]  # nothing trained now: only found
    row["wall_s"] = before["wall_s"] + (0.0 if found else row["wall_s"])
  if stopped_short(result):  # a SIGTERM: saved where it stood
    save_json(saved, row)
    raise Stopped(f"{workdir} stopped at step {result['step']}/{result['total_steps']}")
  records = read_metrics(os.path.join(workdir, "metrics.jsonl"))
  row = {"steps": row["steps"], "train_error": final_training_error(records),
         "test_error": 1 - result["eval/accuracy"], "wall_s": row["wall_s"]}
  save_json(saved, row)
  return row, records


def final_training_error(records: list[dict], fraction: float = 0.1) -> float:
  """1 - training accuracy over the last `fraction` of the steps: the logged windows that
  start there (a record's `train/accuracy` is the mean over the steps since the record
  before it), weighted by their steps; the last window alone if it is longer. Not the
  last window alone: 1,860 steps logged every 50 end in a window of 10 steps (640
  images), too few to order two networks a point apart. Under the cosine schedule the
  learning rate in the last tenth is below 2.5% of its peak, so this is the final
  network's error on some 10,000 of the (augmented) training images. A step logged twice
  (a resumed run) counts once, its last record."""
  accuracy = {r["step"]: r["train/accuracy"] for r in records if "train/accuracy" in r}
  steps = sorted(accuracy)
  first_counted = (1 - fraction) * steps[-1]
  counted = [(end - start, accuracy[end]) for start, end in zip([0] + steps, steps)
             if start >= first_counted]
  if not counted:
    return 1 - accuracy[steps[-1]]
  return 1 - sum(n * a for n, a in counted) / sum(n for n, _ in counted)


def seed_summary(rows: list[dict]) -> list[dict]:
  """Per network: mean and sample standard deviation of the errors over the seeds."""
  out = []
  for name in dict.fromkeys(r["network"] for r in rows):
    mine = [r for r in rows if r["network"] == name]
    row = {"network": name, "seeds": len(mine)}
    for key in ("train_error", "test_error"):
      row[key], row[f"{key}_std"] = mean_and_sd(r[key] for r in mine)
    out.append({**row, "wall_s": statistics.mean(r["wall_s"] for r in mine)})
  return out


def parse_networks(values: list[str]) -> list[str]:
  """A `--networks` list flag, checked before anything trains, in the table's order."""
  unknown = [v for v in values if v not in RUNS]
  if unknown or not values:
    raise fail("networks", f"some of {list(RUNS)}", ",".join(values))
  return [name for name in RUNS if name in values]


def main(argv):
  del argv
  rows, curves = [], {}
  networks, seeds = parse_networks(FLAGS.networks), parse_seeds(FLAGS.seeds)
  sweep = Sweep(**{field.name: FLAGS[field.name].value for field in dataclasses.fields(Sweep)})
  for seed in seeds:
    for name in networks:
      config = network_config(RUNS[name], sweep)
      config.seed = seed
      try:
        row, records = train_network(config, os.path.join(FLAGS.workdir, f"seed{seed}", name))
      except Stopped as stop:  # not the next network: a SIGTERM asks the process to stop
        logging.warning("%s; the same command resumes the sweep there.", stop)
        return
      rows.append({"network": name, "seed": seed, **row})
      curves.setdefault(name, records)  # the figure draws the first seed
  png = plot_training_error(curves, os.path.join(FLAGS.workdir, "degradation.png"),
                            f"plain vs residual on {FLAGS.dataset} (dashed: train, solid: test)")
  summary = seed_summary(rows)
  print(format_table(rows))
  if len(FLAGS.seeds) > 1:
    print(format_table(summary))
  payload = {"machine": machine(), "flags": flag_values(config.optimizer.learning_rate),
             "rows": rows, "summary": summary}
  print(f"wrote {png} and {save_json(os.path.join(FLAGS.workdir, 'degradation.json'), payload)}")


def flag_values(learning_rate: float) -> dict:
  """The sweep's flags for its JSON, `learning_rate` the peak the networks trained at
  (the flag's unset default resolved: 5e-4, or the paper's 0.1)."""
  values = {k: FLAGS[k].value for k in ("epochs", "recipe", "augment", "init", "adam_b2",
                                        "seeds", "networks", "dataset")}
  return {**values, "learning_rate": learning_rate}


if __name__ == "__main__":
  launch.run(main)
