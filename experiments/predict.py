r"""Top-5 ImageNet classes for images, from torchvision's pretrained weights.

  python -m experiments.predict --model=mobilenet_v2 --weights=imagenet chelsea coffee
  python -m experiments.predict --model=resnet50 --weights=/path/resnet50-0676ba61.pth a.jpg
  python -m experiments.predict --model=resnet50 --weights=/path/resnet50-11ad3fa6.pth \
      --resize=232 a.jpg     # torchvision's V2 weights were evaluated at Resize(232)

Images are files or scikit-image sample names (chelsea, coffee, astronaut, ...).
`--weights=imagenet` fetches MobileNetV2's weights once (see cnn_lab.pretrained.weights);
any architecture with a torchvision converter takes a torchvision `.pth` file. Images
are preprocessed as torchvision evaluates that architecture's original weights
(`cnn_lab.pretrained.imagenet.EVAL_TRANSFORMS`) unless --crop/--resize/--interpolation say
otherwise.
"""

import jax
import numpy as np
from absl import flags
from flax import nnx

from cnn_lab.data.images import load_image
from cnn_lab.errors import fail
from cnn_lab.pretrained.convert import CONVERTERS
from cnn_lab.pretrained.imagenet import (INTERPOLATIONS, class_names, eval_transform,
                                         preprocess, pretrained_model)
from cnn_lab.train import launch

flags.DEFINE_enum("model", "mobilenet_v2", sorted(CONVERTERS), "The architecture.")
flags.DEFINE_string("weights", "imagenet", "'imagenet' or a torchvision .pth file.")
flags.DEFINE_integer("crop", None, "Centre crop size (default: the architecture's).")
flags.DEFINE_integer("resize", None, "Shorter side before cropping (default: the architecture's).")
flags.DEFINE_enum("interpolation", None, sorted(INTERPOLATIONS),
                  "Resize filter (default: the architecture's).")
flags.DEFINE_integer("top", 5, "How many classes to print per image.")
FLAGS = flags.FLAGS


def top_classes(logits: np.ndarray, k: int) -> list[tuple[int, str, float]]:
  probs = np.asarray(jax.nn.softmax(logits))
  order = np.argsort(-probs)[:k]
  return [(int(i), class_names()[i], float(probs[i])) for i in order]


def main(argv):
  if len(argv) < 2:
    raise fail("images", "image paths or scikit-image sample names", "none")
  images = [(item, load_image(item)) for item in argv[1:]]  # bad input: before any fetch
  model = pretrained_model(FLAGS.model, FLAGS.weights)
  graphdef, state = nnx.split(model)
  forward = jax.jit(lambda state, x: nnx.merge(graphdef, state)(x))
  crop, resize, interpolation = eval_transform(FLAGS.model)
  transform = dict(size=FLAGS.crop or crop, resize=FLAGS.resize or resize,
                   interpolation=FLAGS.interpolation or interpolation)
  for item, image in images:
    logits = np.asarray(forward(state, preprocess(image, **transform)[None]))[0]
    print(f"{item}:")
    for index, name, p in top_classes(logits, FLAGS.top):
      print(f"  {p:7.2%}  {index:4d}  {name}")


if __name__ == "__main__":
  launch.run(main)
