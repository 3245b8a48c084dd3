r"""Sliding windows, naive and convolutional (the course's "convolutional implementation").

  python -m experiments.sliding_windows [--steps=5000] [--out=docs/figures/sliding_windows]

1. Trains the lecture's 14x14x3 window classifier (`sliding_window_net`) on windows
   cut from `shapes/multi_64` training scenes at 32x32, at the scan's positions: 8
   shape classes (an object centred in the window) + "background" (no object near).
2. Scans `shapes/multi_64` test scenes at 32x32 and 64x64 with 14x14 windows at
   stride 2: naively (every window cropped and classified) and convolutionally (the
   same weights as 5x5/1x1 convolutions, one pass), checks the outputs agree, and
   times both (compile excluded, medians).
3. Writes `scan.png` (at 32x32: a dot at the centre of each window classified as a
   shape with probability > 0.9, in that class's colour) and `results.json`.
"""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags
from flax import nnx

from cnn_lab.benchmarks.report import format_table
from cnn_lab.benchmarks.timing import machine, median_seconds
from cnn_lab.data import datasets
from cnn_lab.data.pipeline import Preprocess
from cnn_lab.data.shapes import CLASSES
from cnn_lab.models import create_model
from cnn_lab.train import launch
from cnn_lab.train.arrays import fit_classifier
from cnn_lab.viz import draw_points, grid
from cnn_lab.viz.detections import PALETTE, to_uint8

flags.DEFINE_integer("steps", 5000, "Training steps of the window classifier (batch 64).")
flags.DEFINE_integer("scenes", 64, "Test scenes scanned and timed.")
flags.DEFINE_string("out", "docs/figures/sliding_windows", "Where results go.")
FLAGS = flags.FLAGS
WINDOW, STRIDE, SCENE = 14, 2, 32
BACKGROUND = len(CLASSES)
SPLITS = ("train", "test")
MEAN, STD = 0.45, 0.25


def window_data(split: str):
  """Labelled 14x14 windows of `shapes/multi_64` scenes at 32x32 -> (images, labels).

  A window at a scan position is labelled with the class of the object whose centre
  lies within one stride of the window's centre; windows with no object centre
  within 5 pixels are background (label 8), as many as there are object windows.
  """
  source = datasets.load_source("shapes/multi_64", split)
  records = [source[i] for i in range(len(source))]
  scenes = Preprocess(SCENE, MEAN, STD)({"image": np.stack([r["image"] for r in records])})
  p = (SCENE - WINDOW) // STRIDE + 1
  wy, wx = np.meshgrid(np.arange(p) * STRIDE + WINDOW / 2, np.arange(p) * STRIDE + WINDOW / 2,
                       indexing="ij")
  objects, background = [], []
  for k, r in enumerate(records):
    boxes = np.asarray(r["objects"]["bbox"], np.float32).reshape(-1, 4) * SCENE  # yxyx
    cy, cx = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    dist = np.hypot(wy[..., None] - cy, wx[..., None] - cx)  # [p, p, objects]
    nearest, closest = dist.argmin(-1), dist.min(-1)
    for i, j in zip(*np.nonzero(closest <= STRIDE)):
      objects.append((k, i, j, int(r["objects"]["label"][nearest[i, j]])))
    background += [(k, i, j, BACKGROUND) for i, j in zip(*np.nonzero(closest > 5))]
  rng = np.random.default_rng(SPLITS.index(split))
  chosen = rng.choice(len(background), len(objects), replace=False)
  picked = objects + [background[c] for c in chosen]
  images = np.stack([scenes["image"][k, STRIDE * i:STRIDE * i + WINDOW,
                                     STRIDE * j:STRIDE * j + WINDOW] for k, i, j, _ in picked])
  return images, np.array([label for *_, label in picked], np.int32)


def train(steps: int):
  images, labels = window_data("train")
  model = create_model("sliding_window_net", rngs=nnx.Rngs(0), num_classes=len(CLASSES) + 1)
  model = fit_classifier(model, images, labels, steps=steps)
  test_images, test_labels = window_data("test")
  accuracy = float(np.mean(np.argmax(model(test_images), -1) == test_labels))
  return model, accuracy


def windows(images):
  """`[N, S, S, C]` -> every 14x14 window at stride 2: `[N * P * P, 14, 14, C]`."""
  n, s, _, c = images.shape
  p = (s - WINDOW) // STRIDE + 1
  rows = (np.arange(p) * STRIDE)[:, None] + np.arange(WINDOW)  # [p, 14]: window i's rows
  # one gather, [N, p, p, 14, 14, C]; a slice per window made 676 ops at 64x64, and
  # compiling them took 8.6 s
  crops = images[:, rows[:, None, :, None], rows[None, :, None, :]]
  return crops.reshape(n * p * p, WINDOW, WINDOW, c), p


def main(argv):
  del argv
  model, window_accuracy = train(FLAGS.steps)
  conv_model = model.to_convolutional()
  source = datasets.load_source("shapes/multi_64", "test")
  raw = np.stack([source[i]["image"] for i in range(FLAGS.scenes)])

  naive = jax.jit(lambda x: model(windows(x)[0]))
  dense = jax.jit(lambda x: conv_model(x))
  rows, outputs = [], {}
  for size in (SCENE, 2 * SCENE):  # the saving grows with the image
    x = jnp.asarray(Preprocess(size, MEAN, STD)({"image": raw})["image"])
    p = (size - WINDOW) // STRIDE + 1
    naive_out = naive(x).reshape(FLAGS.scenes, p, p, -1)
    outputs[size] = dense_out = dense(x)
    max_diff = float(jnp.max(jnp.abs(naive_out - dense_out)))
    t_naive, t_dense = median_seconds(naive, x), median_seconds(dense, x)
    for method, t in (("naive: crop, classify each window", t_naive),
                      ("convolutional: one pass", t_dense)):
      rows.append({"scene": f"{size}x{size}", "windows/scene": f"{p}x{p}", "method": method,
                   "ms": 1e3 * t, "scenes_per_s": FLAGS.scenes / t,
                   "speedup": t_naive / t, "max_abs_diff": max_diff})
  print(f"window classifier accuracy on test-scene windows (9 classes, 14x14, half "
        f"background): {window_accuracy:.4f}")
  print(f"{FLAGS.scenes} scenes per batch; 14x14 windows at stride 2; max_abs_diff: naive "
        "against convolutional outputs")
  print(format_table(rows))
  dense_out, p = outputs[SCENE], (SCENE - WINDOW) // STRIDE + 1

  os.makedirs(FLAGS.out, exist_ok=True)
  tiles = []
  for k in range(min(8, FLAGS.scenes)):
    img = _enlarge(raw[k])
    probs = np.asarray(jax.nn.softmax(dense_out[k]))
    cls, confident = probs.argmax(-1), probs.max(-1) > 0.9
    for i in range(p):
      for j in range(p):
        if cls[i, j] != BACKGROUND and confident[i, j]:
          centre = ((j * STRIDE + WINDOW / 2) / SCENE, (i * STRIDE + WINDOW / 2) / SCENE)
          draw_points(img, [centre], PALETTE[cls[i, j]], radius=3)
    tiles.append(img)
  grid(tiles).save(os.path.join(FLAGS.out, "scan.png"))
  with open(os.path.join(FLAGS.out, "results.json"), "w") as f:
    json.dump({"machine": machine(), "window_accuracy": window_accuracy, "rows": rows}, f,
              indent=2)
  print(f"wrote {FLAGS.out}/scan.png and results.json")


def _enlarge(image):
  from PIL import Image
  return Image.fromarray(to_uint8(image)).resize((256, 256), Image.NEAREST)


if __name__ == "__main__":
  launch.run(main)
