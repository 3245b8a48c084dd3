r"""Draws a trained segmentation network's predictions: image | ground truth | prediction.

  python -m experiments.segment --workdir=/tmp/unet IMAGE_OR_SAMPLE_NAME...
  python -m experiments.segment --workdir=/tmp/unet --examples=8 --time_batch=64

Reads the run's config and latest checkpoint from `--workdir`; writes one PNG per
image (and `grid.png` with a class legend for `--examples`) to `--out` (default
WORKDIR/segmentations). Colours: class 0 black, then a fixed palette.
"""

import os

import jax
import numpy as np
from absl import flags, logging
from flax import nnx
from PIL import Image

from cnn_lab.benchmarks.timing import inference_report
from cnn_lab.data import datasets
from cnn_lab.data.images import load_image
from cnn_lab.data.pipeline import Preprocess
from cnn_lab.errors import fail
from cnn_lab.train import launch
from cnn_lab.train.restore import eval_images, load_run
from cnn_lab.viz import grid, legend, segmentation_panel

flags.DEFINE_string("workdir", None, "A segmentation run's workdir (experiments.train).")
flags.DEFINE_string("out", None, "Where PNGs go (default: WORKDIR/segmentations).")
flags.DEFINE_integer("examples", 0, "Also draw this many images of the run's test split.")
flags.DEFINE_integer("time_batch", 0, "Also time the jitted network on a batch of this "
                     "many test images and print images/s.")
flags.mark_flags_as_required(["workdir"])
FLAGS = flags.FLAGS


def main(argv):
  run = load_run(FLAGS.workdir)
  if run.config.task != "segmentation":
    raise fail("workdir", "a segmentation run", f"task {run.config.task!r}")
  cfg = run.config.dataset
  preprocess = Preprocess.for_dataset(cfg)
  graphdef, state = nnx.split(run.model)
  segment = jax.jit(lambda state, x: nnx.merge(graphdef, state)(x).argmax(-1))
  out_dir = FLAGS.out or os.path.join(FLAGS.workdir, "segmentations")
  os.makedirs(out_dir, exist_ok=True)

  items = [(os.path.splitext(os.path.basename(p))[0], load_image(p), None) for p in argv[1:]]
  if FLAGS.examples:
    source = datasets.evaluation_source(cfg)
    encode = run.task.encode()
    for i in range(min(FLAGS.examples, len(source))):
      record = encode(source[i])
      items.append((f"example_{i:03d}", np.asarray(record["image"]), record["segmentation"]))
  if FLAGS.time_batch:
    print(inference_report(segment, state, eval_images(run, FLAGS.time_batch), "network"))
  if not items:
    if FLAGS.time_batch:
      return
    raise fail("images", "image paths, sample names or --examples=N", "nothing")

  panels = []
  for name, image, truth in items:
    x = preprocess.one({"image": image})["image"][None]
    prediction = np.asarray(jax.device_get(segment(state, x)))[0]
    shown = np.asarray(Image.fromarray(image).resize(prediction.shape[::-1], Image.BILINEAR))
    if truth is not None:
      truth = preprocess.one({"image": image, "segmentation": truth})["segmentation"]
    panel = segmentation_panel(shown, truth, prediction)
    panel.save(os.path.join(out_dir, f"{name}.png"))
    if truth is not None:
      panels.append(panel)
  if panels:
    names = run.task.class_names or tuple(str(k) for k in range(run.task.num_classes))
    sheet = grid(panels, columns=2)
    key = legend(names)
    canvas = Image.new("RGB", (max(sheet.width, key.width), sheet.height + key.height + 4),
                       (255, 255, 255))
    canvas.paste(sheet, (0, 0))
    canvas.paste(key, (4, sheet.height + 2))
    canvas.save(os.path.join(out_dir, "grid.png"))
  logging.info("Wrote %d images to %s (step %d).", len(items), out_dir, run.step)


if __name__ == "__main__":
  launch.run(main)
