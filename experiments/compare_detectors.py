r"""One-stage (YOLO) against two-stage (Faster R-CNN) detection on the same split.

  python -m experiments.compare_detectors [--workdir=/tmp/detectors] [--out=docs/figures/detectors]

Trains each detector's default config (`yolo_shapes.py`, `faster_rcnn_shapes.py`, both
on `shapes/multi_64`, seed 0; `--detectors` takes presets too, e.g.
`faster_rcnn_shapes:roi_pool`) through the launcher
in a fresh process, one after the other, and records the wall time a user waits
(imports, data build, compilation, training, periodic evaluation). Then, in this
process, times inference (the jitted model, decoding and NMS on a batch of test
images, the detectors taking turns in each round), prints the table, writes
`results.json` and `detections.png` (the same test scenes, one column per detector).
A workdir whose run finished is reused with its recorded time; delete it to measure
again. `--nofresh_launch` trains with this machine's prepared data and compilation
cache instead (faster; train_wall_s is then a warm launch's).
"""

import json
import os
import statistics

import jax
import numpy as np
from absl import flags
from flax import nnx

from cnn_lab.benchmarks.report import format_table
from cnn_lab.benchmarks.seeds import cached_run
from cnn_lab.benchmarks.timing import machine, median_seconds
from cnn_lab.data import datasets
from cnn_lab.data.pipeline import PadObjects
from cnn_lab.data.shapes import CLASSES
from cnn_lab.train import launch
from cnn_lab.train.restore import detector, eval_images, load_run
from cnn_lab.viz import draw_boxes, grid

flags.DEFINE_string("workdir", "/tmp/detectors", "Where each detector's run goes.")
flags.DEFINE_string("out", "docs/figures/detectors", "Where the table and figures go.")
flags.DEFINE_list("detectors", ["yolo_shapes", "faster_rcnn_shapes"],
                  "Configs to compare, each maybe with presets after a colon "
                  "(e.g. faster_rcnn_shapes:roi_pool).")
flags.DEFINE_string("preset", "", "Config preset for every detector (e.g. test).")
flags.DEFINE_integer("time_batch", 64, "Test images per timed inference call.")
flags.DEFINE_integer("rounds", 3, "Timing rounds (each detector timed once per round).")
flags.DEFINE_float("min_score", 0.5, "Drawn detections score at least this.")
flags.DEFINE_bool("fresh_launch", True, "Train each detector with an empty data dir and "
                  "compilation cache of its own (a first launch's wall time).")
FLAGS = flags.FLAGS


def trained(name: str) -> dict:
  """Trains `name` (a config, maybe with presets: `faster_rcnn_shapes:roi_pool`) in its
  own workdir unless done before; -> eval metrics and wall_s."""
  config, _, presets = name.partition(":")
  presets = ",".join(p for p in (presets, FLAGS.preset) if p)
  path = os.path.join("experiments", "configs", f"{config}.py")
  return cached_run(path + (f":{presets}" if presets else ""),
                    os.path.join(FLAGS.workdir, name.replace(":", "-")), FLAGS.fresh_launch)


def main(argv):
  del argv
  results = {name: trained(name) for name in FLAGS.detectors}
  runs = {name: load_run(os.path.join(FLAGS.workdir, name.replace(":", "-")))
          for name in FLAGS.detectors}
  detectors = {name: detector(run) for name, run in runs.items()}
  images = {name: eval_images(run, FLAGS.time_batch) for name, run in runs.items()}
  times = {name: [] for name in runs}
  for _ in range(FLAGS.rounds):  # taking turns: a busy spell of the machine is shared
    for name, (detect, state) in detectors.items():
      times[name].append(median_seconds(detect, state, images[name], repeats=3))
  rows = []
  for name, run in runs.items():
    r, seconds = results[name], statistics.median(times[name])
    pool = {"align": " (RoIAlign)", "max": " (RoI max pool)"}.get(run.config.model.get("pool"), "")
    rows.append({"detector": name, "model": run.config.model.name + pool,
                 "params": sum(x.size for x in jax.tree.leaves(nnx.state(run.model, nnx.Param))),
                 "voc_mAP50": r["eval/voc_mAP50"],
                 "coco_mAP": r["eval/coco_mAP"], "coco_AP75": r["eval/coco_AP75"],
                 "steps": run.step, "train_wall_s": r["wall_s"],
                 "images_per_s": FLAGS.time_batch / seconds})
  count = int(results[FLAGS.detectors[0]]["eval/count"])
  launch = "fresh" if FLAGS.fresh_launch else "warm"
  print(f"{machine()['cpu']}, {machine()['cores']} cores; mAP on the {count} test scenes of "
        f"{runs[FLAGS.detectors[0]].config.dataset.name}; train_wall_s: a {launch} launch to "
        f"the end; images_per_s: jitted model + decoding + NMS, batch {FLAGS.time_batch}, "
        f"median of {FLAGS.rounds} rounds")
  print(format_table(rows))
  os.makedirs(FLAGS.out, exist_ok=True)
  with open(os.path.join(FLAGS.out, "results.json"), "w") as f:
    json.dump({"machine": machine(), "rows": rows, "preset": FLAGS.preset,
               "fresh_launch": FLAGS.fresh_launch}, f, indent=2)
  _draw(runs, detectors, os.path.join(FLAGS.out, "detections.png"))
  print(f"wrote {FLAGS.out}/results.json and detections.png")


def _draw(runs, detectors, path: str, count: int = 6):
  """Rows of test scenes: each detector's boxes side by side (truth thin, white)."""
  first = next(iter(runs.values()))
  cfg = first.config.dataset
  source = datasets.evaluation_source(cfg)
  pad = PadObjects(getattr(first.task, "max_objects", 4))
  tiles = []
  for name, run in runs.items():
    detect, state = detectors[name]
    batch = eval_images(run, count)
    out = {k: np.asarray(v) for k, v in detect(state, batch).items()}
    for i in range(count):
      record = pad(source[i])
      found = record["classes"] >= 0
      keep = out["scores"][i] >= FLAGS.min_score
      tiles.append(draw_boxes(record["image"], out["boxes"][i][keep],
                              out["classes"][i][keep], out["scores"][i][keep], names=CLASSES,
                              truth=(record["boxes"][found], record["classes"][found])))
  # one column per detector: tile i of detector d at row i, column d
  order = [tiles[d * count + i] for i in range(count) for d in range(len(runs))]
  titles = [f"{name}: {run.config.model.name}" for name, run in runs.items()]
  grid(order, columns=len(runs), titles=titles).save(path)


if __name__ == "__main__":
  launch.run(main)
