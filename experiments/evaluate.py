r"""Trained classifiers alone, with test-time augmentation, and as an ensemble.

  python -m experiments.evaluate --workdirs=/tmp/mnist/seed0,/tmp/mnist/seed1,/tmp/mnist/seed2 \
      --crops=9 --out=docs/figures/mnist

Every workdir is a finished classification run of the same dataset and preprocessing
(e.g. `experiments.seeds` of one config). On the runs' evaluation split it prints one
row per way of predicting, with what each costs at inference:
  - each model alone (the centre view), and the first (every one with --crops_each)
    with `--crops` views (the image and its one-pixel shifts; 5: +4 neighbours, 9: the
    3x3 grid), probabilities averaged;
  - the ensemble of all models (their probabilities averaged), alone and with the crops.
Inference time is the whole split through the jitted models on this machine, batch
`--batch`, compilation excluded (median of `--repeats`). For the best row it draws the
images it gets wrong (truth -> prediction, confidence) and the confusion matrix, and
writes `results.json`.
"""

import json
import os
import statistics
import time

import jax
import numpy as np
from absl import flags
from flax import nnx

from cnn_lab.benchmarks.report import format_table
from cnn_lab.benchmarks.timing import machine
from cnn_lab.data import datasets
from cnn_lab.data.pipeline import Preprocess
from cnn_lab.errors import fail
from cnn_lab.eval.classification import SHIFTS, check_crops, confusion_matrix, tta_probabilities
from cnn_lab.train import launch
from cnn_lab.train.restore import load_run
from cnn_lab.viz.classification import plot_confusion, plot_misclassified

flags.DEFINE_list("workdirs", None, "Finished classification runs, comma-separated.")
flags.DEFINE_integer("crops", 9, f"Views per image for test-time augmentation: {sorted(SHIFTS)}.")
flags.DEFINE_bool("crops_each", False, "Test-time augmentation for every model alone too "
                  "(by default for the first one; it costs as much as the ensemble's).")
flags.DEFINE_integer("batch", 1000, "Images per inference call.")
flags.DEFINE_integer("repeats", 3, "Timed passes over the split; the median is reported.")
flags.DEFINE_integer("show", 60, "How many misclassified images to draw.")
flags.DEFINE_string("out", "", "Folder for results.json, errors.png, confusion.png "
                    "(default: the first workdir's `evaluation`).")
flags.mark_flags_as_required(["workdirs"])
FLAGS = flags.FLAGS

SAME = ("name", "image_size", "mean", "std", "resize_method")  # what makes inputs equal


def evaluation_split(config) -> tuple[np.ndarray, np.ndarray]:
  """(images float32 `[N, S, S, C]` preprocessed as in training, labels int64 `[N]`)."""
  cfg = config.dataset
  source = datasets.evaluation_source(cfg)
  records = [source[i] for i in range(len(source))]
  batch = Preprocess.for_dataset(cfg)(
      {"image": np.stack([r["image"] for r in records]),
       "label": np.array([r["label"] for r in records])})
  return batch["image"], batch["label"].astype(np.int64)


def check_comparable(runs, workdirs) -> None:
  first = runs[0].config
  for run, workdir in zip(runs, workdirs):
    if run.config.task != "classification":
      raise fail("workdirs", "classification runs", f"{workdir} ({run.config.task})")
    ours = {k: run.config.dataset.get(k) for k in SAME} | {
        "eval_split": datasets.splits(run.config.dataset)[1]}
    theirs = {k: first.dataset.get(k) for k in SAME} | {
        "eval_split": datasets.splits(first.dataset)[1]}
    if ours != theirs:
      raise fail("workdirs", f"runs on the same data and preprocessing as {workdirs[0]} "
                 f"({theirs})", f"{workdir} ({ours})")


def predictor(models, crops: int):
  """One jitted function: images `[B, S, S, C]` -> probabilities `[B, K]` averaged over
  `models` (logits functions) and `crops` views."""
  return jax.jit(lambda x: sum(tta_probabilities(m, x, crops) for m in models) / len(models))


def probabilities(predict, images, batch: int) -> np.ndarray:
  return np.concatenate([np.asarray(predict(images[i:i + batch]))
                         for i in range(0, len(images), batch)])


def timed(models, images, crops: int, batch: int, repeats: int):
  """(probabilities `[N, K]`, median seconds for the split); a first pass compiles."""
  predict = predictor(models, crops)
  probs = probabilities(predict, images, batch)
  seconds = []
  for _ in range(repeats):
    start = time.perf_counter()
    probabilities(predict, images, batch)
    seconds.append(time.perf_counter() - start)
  return probs, statistics.median(seconds)


def logits_function(run):
  """images -> logits of a restored run (traced into the caller's jit)."""
  graphdef, state = nnx.split(run.model)
  return lambda x: nnx.merge(graphdef, state)(x)


def row(name: str, probs, labels, seconds: float, models: int, crops: int) -> dict:
  """One table row; `test_error_pct` is the error on the runs' evaluation split."""
  errors = int(np.sum(probs.argmax(-1) != labels))
  return {"predictor": name, "models": models, "crops": crops,
          "test_error_pct": round(100 * errors / len(labels), 3), "errors": errors,
          "inference_s": round(seconds, 3), "images_per_s": round(len(labels) / seconds)}


def draw(probs, images, labels, out: str, title: str, show: int) -> dict:
  predicted = probs.argmax(-1)
  wrong = np.flatnonzero(predicted != labels)
  wrong = wrong[np.argsort(-probs[wrong, predicted[wrong]])]  # most confident first
  paths = {"errors": plot_misclassified(
      images[wrong[:show]], labels[wrong[:show]], predicted[wrong[:show]],
      probs[wrong[:show], predicted[wrong[:show]]], os.path.join(out, "errors.png"),
      title=f"{title}: {len(wrong)} errors of {len(labels)} (truth\u2192prediction, "
            "confidence), most confident first")}
  matrix = np.asarray(confusion_matrix(labels, predicted, probs.shape[-1]), np.int64)
  paths["confusion"] = plot_confusion(matrix, os.path.join(out, "confusion.png"),
                                      title=f"{title}: confusion matrix")
  return {"figures": paths, "confusion_matrix": matrix.tolist(),
          "misclassified_indices": wrong.tolist()}


def main(argv):
  del argv
  check_crops(FLAGS.crops)
  runs = [load_run(w) for w in FLAGS.workdirs]
  check_comparable(runs, FLAGS.workdirs)
  images, labels = evaluation_split(runs[0].config)
  fns = [logits_function(r) for r in runs]
  rows, kept = [], {}
  for i, (workdir, fn) in enumerate(zip(FLAGS.workdirs, fns)):
    for crops in sorted({1, FLAGS.crops if i == 0 or FLAGS.crops_each else 1}):
      probs, seconds = timed([fn], images, crops, FLAGS.batch, FLAGS.repeats)
      name = os.path.basename(os.path.normpath(workdir)) + (f" + {crops} crops" if crops > 1
                                                            else "")
      rows.append(row(name, probs, labels, seconds, 1, crops))
      kept[name] = probs
  if len(fns) > 1:
    for crops in sorted({1, FLAGS.crops}):
      probs, seconds = timed(fns, images, crops, FLAGS.batch, FLAGS.repeats)
      name = f"ensemble of {len(fns)}" + (f" + {crops} crops" if crops > 1 else "")
      rows.append(row(name, probs, labels, seconds, len(fns), crops))
      kept[name] = probs
  best = min(rows, key=lambda r: (r["test_error_pct"], r["inference_s"]))
  out = FLAGS.out or os.path.join(FLAGS.workdirs[0], "evaluation")
  os.makedirs(out, exist_ok=True)
  figures = draw(kept[best["predictor"]], images, labels, out, best["predictor"], FLAGS.show)
  cfg = runs[0].config.dataset
  print(f"{machine()['cpu']}; {len(labels)} images of {cfg.name} "
        f"({datasets.splits(cfg)[1]}); inference: the whole split, batch {FLAGS.batch}, "
        f"compilation excluded, median of {FLAGS.repeats}")
  print(format_table(rows))
  print(f"best: {best['predictor']} ({best['test_error_pct']}% test error); figures: "
        f"{figures['figures']['errors']}, {figures['figures']['confusion']}")
  path = os.path.join(out, "results.json")
  with open(path, "w") as f:
    json.dump({"machine": machine(), "workdirs": FLAGS.workdirs, "rows": rows,
               "best": best["predictor"], **figures}, f, indent=1)
  print(f"wrote {path}")


if __name__ == "__main__":
  launch.run(main)
