r"""A grid of augmented samples with their boxes, landmarks and masks, to look at.

  python -m experiments.augmentations --out=docs/figures/augmentations.png [--dataset=shapes/single_64]

Rows: each augmentation of `cnn_lab.data.augment`: the original, then 6 draws;
boxes in the class colour, landmarks as yellow rings, the mask's outline tinted.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags
from PIL import Image

from cnn_lab.data import augment as A
from cnn_lab.data import datasets
from cnn_lab.data.pipeline import PadObjects, SegmentationTarget
from cnn_lab.data.shapes import CLASSES, NUM_LANDMARKS
from cnn_lab.train import launch
from cnn_lab.viz import draw_boxes, draw_points, grid
from cnn_lab.viz.segmentation import colorize

flags.DEFINE_string("dataset", "shapes/single_64", "A shapes config (boxes, landmarks, masks).")
flags.DEFINE_integer("index", 3, "Which test example.")
flags.DEFINE_string("out", "docs/figures/augmentations.png", "The PNG to write.")
FLAGS = flags.FLAGS

AUGMENTATIONS = {
    "flip": functools.partial(A.random_flip, horizontal=True, vertical=True),
    "rotation 0.1": functools.partial(A.random_rotation, factor=0.1),
    "scale 0.3": functools.partial(A.random_scale, max_scale=0.3),
    "pad 8 + crop": functools.partial(A.pad_and_crop, pad=8),
    "resized crop": functools.partial(A.random_resized_crop, size=64, scale=(0.25, 1.0)),
    "colour jitter": functools.partial(A.color_jitter, brightness=0.2, contrast=0.4,
                                       saturation=0.5, hue=0.1),
}


def draw(example) -> Image.Image:
  image = np.asarray(example["image"])
  seg = np.asarray(example["segmentation"])
  tinted = np.where((seg > 0)[..., None], 0.6 * image + 0.4 * colorize(seg) / 255.0, image)
  boxes = np.asarray(example["boxes"])
  real = np.any(boxes != 0, -1)
  img = draw_boxes(tinted, boxes[real], np.asarray(example["classes"])[real], names=CLASSES,
                   min_side=128)
  return draw_points(img, np.asarray(example["landmarks"])[real].reshape(-1, 2))


def main(argv):
  del argv
  source = datasets.load_source(FLAGS.dataset, "test")
  record = PadObjects(4, NUM_LANDMARKS)(source[FLAGS.index])
  record = SegmentationTarget(len(CLASSES) + 1)({**record, "mask": source[FLAGS.index]["mask"]})
  example = {"image": jnp.asarray(record["image"], jnp.float32) / 255.0,
             "boxes": jnp.asarray(record["boxes"]), "landmarks": jnp.asarray(record["landmarks"]),
             "segmentation": jnp.asarray(record["segmentation"])}
  original = draw({**example, "classes": record["classes"]})
  rows = []
  for fn in AUGMENTATIONS.values():
    fn = jax.jit(fn)
    tiles = [draw({**fn(jax.random.key(seed), example), "classes": record["classes"]})
             for seed in range(6)]
    rows.append(grid([original] + tiles, columns=7))
  sheet = grid(rows, columns=1, pad=6)
  sheet.save(FLAGS.out)
  print(f"wrote {FLAGS.out}: rows = " + ", ".join(AUGMENTATIONS))


if __name__ == "__main__":
  launch.run(main)
