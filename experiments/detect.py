r"""Draws a trained detector's boxes (YOLO, Faster R-CNN) or box and landmarks
(localizer) on images.

  python -m experiments.detect --workdir=/tmp/yolo IMAGE_OR_SAMPLE_NAME...
  python -m experiments.detect --workdir=/tmp/yolo --examples=12   # from the test split

Reads the run's config, task (anchors) and latest checkpoint from `--workdir`; writes one
PNG per image (and `grid.png` for `--examples`) to `--out` (default
WORKDIR/detections) and prints each detection. Images are resized to the model's
input size and normalised as in training; boxes are drawn on the original image.
"""

import os

import jax
import numpy as np
from absl import flags, logging

from cnn_lab.benchmarks.timing import inference_report
from cnn_lab.data import datasets
from cnn_lab.data.images import load_image
from cnn_lab.data.pipeline import PadObjects, Preprocess
from cnn_lab.errors import fail
from cnn_lab.train import launch
from cnn_lab.train.restore import detector, eval_images, load_run
from cnn_lab.viz import draw_boxes, draw_points, grid

flags.DEFINE_string("workdir", None, "A detection run's workdir (experiments.train).")
flags.DEFINE_string("out", None, "Where PNGs go (default: WORKDIR/detections).")
flags.DEFINE_integer("examples", 0, "Also draw this many images of the run's test split.")
flags.DEFINE_float("min_score", 0.3, "Draw and print detections scoring at least this.")
flags.DEFINE_integer("time_batch", 0, "Also time the jitted model + decoding + NMS on a "
                     "batch of this many test images and print images/s.")
flags.mark_flags_as_required(["workdir"])
FLAGS = flags.FLAGS


def class_names(dataset: str) -> tuple:
  if dataset.startswith("shapes/"):
    from cnn_lab.data.shapes import CLASSES
    return CLASSES
  return ()


def main(argv):
  run = load_run(FLAGS.workdir)
  if run.config.task not in ("detection", "two_stage", "localization"):
    raise fail("workdir", "a detection (YOLO, two-stage) or localization run",
               f"task {run.config.task!r}")
  cfg = run.config.dataset
  preprocess = Preprocess.for_dataset(cfg)
  detect, state = detector(run)
  landmarks = getattr(run.task, "num_landmarks", 0)
  names = class_names(cfg.name)
  out_dir = FLAGS.out or os.path.join(FLAGS.workdir, "detections")
  os.makedirs(out_dir, exist_ok=True)

  items = [(os.path.splitext(os.path.basename(p))[0], load_image(p), None) for p in argv[1:]]
  if FLAGS.examples:
    source = datasets.evaluation_source(cfg)
    pad = PadObjects(getattr(run.task, "max_objects", 1))
    for i in range(min(FLAGS.examples, len(source))):
      record = pad(source[i])
      found = record["classes"] >= 0
      items.append((f"example_{i:03d}", np.asarray(record["image"]),
                    (record["boxes"][found], record["classes"][found])))
  if FLAGS.time_batch:
    print(inference_report(detect, state, eval_images(run, FLAGS.time_batch),
                           "model, decoding and NMS"))
  if not items:
    if FLAGS.time_batch:
      return
    raise fail("images", "image paths, sample names or --examples=N", "nothing")

  drawn = []
  for name, image, truth in items:
    x = preprocess.one({"image": image})["image"][None]
    out = jax.device_get(detect(state, x))
    keep = out["scores"][0] >= FLAGS.min_score
    boxes, classes, scores = (out[k][0][keep] for k in ("boxes", "classes", "scores"))
    for b, c, s in zip(boxes, classes, scores):
      label = names[c] if c < len(names) else str(c)
      print(f"{name}: {label:>9} {s:.3f}  box (x1, y1, x2, y2) = "
            f"({b[0]:.3f}, {b[1]:.3f}, {b[2]:.3f}, {b[3]:.3f})")
    img = draw_boxes(image, boxes, classes, scores, names=names, truth=truth)
    if landmarks and len(boxes):
      draw_points(img, out["landmarks"][0])
    img.save(os.path.join(out_dir, f"{name}.png"))
    drawn.append(img)
  if FLAGS.examples:
    grid([d for d, (_, _, t) in zip(drawn, items) if t is not None]).save(
        os.path.join(out_dir, "grid.png"))
  logging.info("Wrote %d images to %s (step %d).", len(drawn), out_dir, run.step)


if __name__ == "__main__":
  launch.run(main)
