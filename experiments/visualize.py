r"""What a ConvNet learned, as PNG grids: first-layer filters, the nine dataset patches
that most activate chosen units (cropped to their receptive field), activation maps
for an image, and a saliency map.

  python -m experiments.visualize --model=mobilenet_v2 --weights=imagenet \
      --out=docs/figures/visualize/imagenet [--layers=blocks.2,blocks.12] [--image=chelsea]
  python -m experiments.visualize --workdir=/tmp/resnet --out=DIR   # a trained run

For ImageNet weights the patch dataset is random crops of scikit-image's colour photos;
for a trained run it is the run's test split. Layers are module paths ("blocks.3");
a wrong one lists valid paths.
"""

import os

import numpy as np
from absl import flags, logging
from PIL import Image

from cnn_lab.data import datasets
from cnn_lab.data.images import load_image
from cnn_lab.data.pipeline import Preprocess
from cnn_lab.errors import fail
from cnn_lab.train import launch
from cnn_lab.viz import grid
from cnn_lab.viz.features import (activations, first_conv_kernel, saliency, to_tile,
                                  top_patches)

flags.DEFINE_string("model", "mobilenet_v2", "A torchvision architecture (with --weights).")
flags.DEFINE_string("weights", "imagenet", "'imagenet' or a .pth path (ignored with --workdir).")
flags.DEFINE_string("workdir", None, "A trained classification run instead of --model.")
flags.DEFINE_list("layers", None, "Module paths for patches and activations.")
flags.DEFINE_integer("units", 6, "Units (channels) per layer for the top-9 patches.")
flags.DEFINE_string("image", "chelsea", "Image file or scikit-image sample for the maps.")
flags.DEFINE_string("out", None, "Where the PNGs go.")
flags.mark_flags_as_required(["out"])
FLAGS = flags.FLAGS
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry",
          "hubble_deep_field", "camera", "coins", "page", "text")


def _imagenet_setup():
  from cnn_lab.pretrained import imagenet
  model = imagenet.pretrained_model(FLAGS.model, FLAGS.weights)
  rng = np.random.default_rng(0)
  raw = []
  for name in PHOTOS:
    photo = load_image(name)
    for _ in range(16):  # random square crops, resized to 224
      side = int(rng.uniform(0.3, 1.0) * min(photo.shape[:2]))
      y, x = rng.integers(0, photo.shape[0] - side + 1), rng.integers(0, photo.shape[1] - side + 1)
      crop = Image.fromarray(photo[y:y + side, x:x + side]).resize((224, 224), Image.BILINEAR)
      raw.append(np.asarray(crop))
  raw = np.stack(raw)
  prepare = lambda images: ((images / 255.0 - imagenet.MEAN) / imagenet.STD).astype(np.float32)
  layers = FLAGS.layers or ["blocks.2", "blocks.12"]
  image = imagenet.preprocess(load_image(FLAGS.image))
  shown = np.clip((image * imagenet.STD + imagenet.MEAN) * 255, 0, 255).astype(np.uint8)
  return model, raw, prepare(raw), layers, image, shown


def _run_setup():
  from cnn_lab.train.restore import load_run
  run = load_run(FLAGS.workdir)
  cfg = run.config.dataset
  preprocess = Preprocess.for_dataset(cfg)
  source = datasets.evaluation_source(cfg)
  records = [source[i]["image"] for i in range(min(len(source), 500))]
  batch = preprocess({"image": np.stack(records)})["image"]
  raw = np.stack([np.asarray(Image.fromarray(np.asarray(r)).resize(batch.shape[1:3][::-1]))
                  for r in records])
  layers = FLAGS.layers
  if not layers:
    raise fail("--layers", "module paths for a trained run, e.g. --layers=blocks.1,blocks.5",
               layers)
  return run.model, raw, batch, layers, batch[0], raw[0]


def main(argv):
  del argv
  model, raw, inputs, layers, image, shown = \
      _run_setup() if FLAGS.workdir else _imagenet_setup()
  os.makedirs(FLAGS.out, exist_ok=True)
  kernel = first_conv_kernel(model, inputs.shape[1:])
  tiles = [to_tile(kernel[..., :3, o] if kernel.shape[2] >= 3 else kernel[..., 0, o], 48)
           for o in range(kernel.shape[-1])]
  grid(tiles, columns=8, pad=2).save(os.path.join(FLAGS.out, "filters.png"))
  for layer in layers:
    feature = np.asarray(activations(model, image[None], [layer])[layer])[0]
    order = np.argsort(-feature.reshape(-1, feature.shape[-1]).max(0))
    units = [int(u) for u in order[:FLAGS.units]]  # the units this image excites most
    crops = top_patches(model, inputs, raw, layer, units, k=9)
    rows = [grid([Image.fromarray(np.asarray(c, np.uint8)).resize((56, 56), Image.BILINEAR)
                  for c in crops[u]], columns=9, pad=2) for u in units]
    grid(rows, columns=1, pad=6).save(os.path.join(FLAGS.out, f"patches_{layer}.png"))
    maps = [to_tile(Image.fromarray(shown).resize((64, 64)), 64)] + \
        [to_tile(feature[..., u], 64, "viridis") for u in units + [int(u) for u in order[-2:]]]
    grid(maps, columns=len(maps), pad=2).save(os.path.join(FLAGS.out,
                                                           f"activations_{layer}.png"))
  heat, label = saliency(model, image)
  grid([to_tile(shown, 224), to_tile(heat, 224, "inferno")], columns=2).save(
      os.path.join(FLAGS.out, "saliency.png"))
  logging.info("Saliency for class %d; wrote filters, patches, activations and saliency "
               "PNGs to %s.", label, FLAGS.out)
  print(f"wrote {FLAGS.out}: filters.png, saliency.png (class {label}), "
        + ", ".join(f"patches_{l}.png, activations_{l}.png" for l in layers))


if __name__ == "__main__":
  launch.run(main)
