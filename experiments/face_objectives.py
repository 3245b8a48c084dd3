r"""Triplet-loss mining against the binary pair classifier, on identities never seen.

  python -m experiments.face_objectives [--workdir=/tmp/face_objectives] [--out=docs/figures/faces]

Trains `facenet_faces.py` once per objective (random triplets, batch-hard and
semi-hard mining, the binary classifier; seed 0) through the launcher in a fresh
process each, and records the wall time. Prints the table (verification accuracy,
ROC AUC, EER, TAR at 0.1% FAR on pairs of the 200 test identities, one-shot accuracy
among 100 of them, open-set accuracy and rejection of the other 100 as strangers at
the threshold chosen on validation identities) and writes `results.json`, `embeddings.png` (a 2-D PCA projection of the
test photographs of 12 held-out identities, per objective) and `identified.png`
(queries of held-out identities beside the enrolled photograph they were matched
to: green when right, red when wrong, grey for "not in the database").
A workdir whose run finished is reused; delete it to measure again.
"""

import json
import os

import numpy as np
from absl import flags
from PIL import Image, ImageDraw

from cnn_lab.benchmarks.report import format_table
from cnn_lab.benchmarks.seeds import cached_run
from cnn_lab.benchmarks.timing import machine
from cnn_lab.data import datasets
from cnn_lab.data.pipeline import Preprocess
from cnn_lab.eval.verification import identify
from cnn_lab.train import launch
from cnn_lab.train.restore import embedder, load_run
from cnn_lab.viz import grid
from cnn_lab.viz.curves import pyplot, save_figure

flags.DEFINE_string("workdir", "/tmp/face_objectives", "Where each objective's run goes.")
flags.DEFINE_string("out", "docs/figures/faces", "Where the table and figures go.")
flags.DEFINE_list("objectives", ["random", "batch_hard", "semi_hard", "binary"],
                  "facenet_faces.py presets (semi_hard is its default).")
flags.DEFINE_string("preset", "", "An extra preset for every run (e.g. test).")
FLAGS = flags.FLAGS
CONFIG = os.path.join("experiments", "configs", "facenet_faces.py")
COLUMNS = ("verification_accuracy", "verification_roc_auc", "verification_eer",
           "verification_tar_at_far_0.001", "one_shot_accuracy", "open_set_accuracy",
           "stranger_rejection")


def held_out(run):
  """The run's evaluation photographs: (uint8 images, labels, normalised inputs)."""
  cfg = run.config.dataset
  source = datasets.evaluation_source(cfg)
  images = np.stack([source[i]["image"] for i in range(len(source))])
  labels = np.array([source[i]["label"] for i in range(len(source))])
  x = Preprocess.for_dataset(cfg)({"image": images})
  return images, labels, x["image"]


def embed(run, x, batch: int = 200) -> np.ndarray:
  f, state = embedder(run)
  return np.concatenate([np.asarray(f(state, x[i:i + batch])) for i in range(0, len(x), batch)])


def plot_embeddings(panels: dict, labels: np.ndarray, path: str, identities: int = 12):
  """One PCA scatter per objective of the test photographs of `identities` people."""
  plt = pyplot()
  people = np.unique(labels[labels >= 600])[:identities]
  fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 4), squeeze=False)
  colours = plt.get_cmap("tab20")(np.linspace(0, 1, identities))
  for ax, (name, emb) in zip(axes[0], panels.items()):
    pick = np.isin(labels, people)
    e = emb[pick] - emb[pick].mean(0)
    _, _, vt = np.linalg.svd(e, full_matrices=False)
    xy = e @ vt[:2].T
    for c, person in zip(colours, people):
      m = labels[pick] == person
      ax.scatter(xy[m, 0], xy[m, 1], s=22, color=c)
    ax.set_title(name)
    ax.set_xticks([])
    ax.set_yticks([])
  fig.suptitle(f"test photographs of {identities} held-out identities (PCA of the "
               "128-d embeddings; one colour per person)")
  fig.tight_layout()
  save_figure(fig, path, dpi=90)


def draw_identified(run, emb, images, labels, threshold, path, count: int = 16):
  """Query | matched enrolled photograph, framed green (right), red (wrong), grey (none)."""
  lo, hi = run.task.gallery_identities
  members = np.flatnonzero((labels >= lo) & (labels < hi))
  _, first = np.unique(labels[members], return_index=True)
  enrolled = members[first]
  queries = np.setdiff1d(members, enrolled)[::7][:count // 2]
  strangers = np.flatnonzero(labels >= run.task.stranger_identities[0])[::11][:count // 2]
  asked = np.r_[queries, strangers]
  distance = run.task.distance(run.model.pair_weights[...], run.model.pair_bias[...])
  found, _ = identify(emb[asked], emb[enrolled], np.arange(len(enrolled)), threshold,
                      distance)
  tiles = []
  for q, k in zip(asked, found):
    tile = Image.new("RGB", (2 * 64 + 12, 64 + 8), (255, 255, 255))
    tile.paste(Image.fromarray(images[q]), (4, 4))
    if k >= 0:
      tile.paste(Image.fromarray(images[enrolled[k]]), (64 + 8, 4))
    right = (k >= 0 and labels[enrolled[k]] == labels[q]) or (k < 0 and labels[q] >= hi)
    colour = (150, 150, 150) if k < 0 and right else (40, 170, 60) if right else (210, 40, 40)
    ImageDraw.Draw(tile).rectangle([0, 0, tile.width - 1, tile.height - 1], outline=colour,
                                   width=3)
    tiles.append(tile.resize((tile.width * 2, tile.height * 2), Image.NEAREST))
  grid(tiles, columns=4).save(path)


def main(argv):
  del argv
  rows, panels, runs = [], {}, {}
  for objective in FLAGS.objectives:
    presets = ",".join(p for p in (objective if objective != "semi_hard" else "",
                                   FLAGS.preset) if p)
    result = cached_run(CONFIG + (f":{presets}" if presets else ""),
                        os.path.join(FLAGS.workdir, objective))
    rows.append({"objective": objective, **{k: result[f"eval/{k}"] for k in COLUMNS},
                 "train_wall_s": result["wall_s"]})
    runs[objective] = (load_run(os.path.join(FLAGS.workdir, objective)),
                       result["eval/open_set_threshold"])
  first = next(iter(runs.values()))[0]
  images, labels, x = held_out(first)
  for objective, (run, _) in runs.items():
    panels[objective] = embed(run, x)
  print(f"{machine()['cpu']}, {machine()['cores']} cores; held-out identities of "
        f"{first.config.dataset.name}: threshold on 100 validation identities, "
        "verification on balanced pairs of 200 test identities, one-shot among 100 of "
        "them, the other 100 strangers; train_wall_s: a fresh launch to the end")
  print(format_table(rows))
  os.makedirs(FLAGS.out, exist_ok=True)
  with open(os.path.join(FLAGS.out, "results.json"), "w") as f:
    json.dump({"machine": machine(), "rows": rows, "preset": FLAGS.preset}, f, indent=2)
  plot_embeddings(panels, labels, os.path.join(FLAGS.out, "embeddings.png"))
  best = max(rows, key=lambda r: r["one_shot_accuracy"])["objective"]
  run, threshold = runs[best]
  draw_identified(run, panels[best], images, labels, threshold,
                  os.path.join(FLAGS.out, "identified.png"))
  print(f"wrote {FLAGS.out}/results.json, embeddings.png and identified.png ({best})")


if __name__ == "__main__":
  launch.run(main)
