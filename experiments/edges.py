r"""Edge detection as the course's first convolution: hand-made 3x3 filters on a photo.

  python -m experiments.edges [--image=camera] [--out=docs/figures/edges.png]

Prints the course's 6x6 example (left half 10, right half 0: the vertical detector
answers 30 in the two middle columns of its 4x4 output) and writes one PNG: the
grey photograph, then for each filter (plain, Sobel, Scharr) the vertical and the
horizontal response (mid-grey 0, white positive, black negative: the sign says
bright-to-dark or dark-to-bright) and the magnitude of both.
"""

import numpy as np
from absl import flags
from PIL import Image

from cnn_lab import ops
from cnn_lab.data.images import load_image
from cnn_lab.train import launch
from cnn_lab.viz.edges import course_example, edge_sheet

flags.DEFINE_string("image", "camera", "An image file or a scikit-image sample name.")
flags.DEFINE_integer("size", 256, "The photograph's shorter side, in pixels, before filtering.")
flags.DEFINE_string("out", "docs/figures/edges.png", "The PNG to write.")
FLAGS = flags.FLAGS


def main(argv):
  del argv
  print("The course's 6x6 example through the vertical detector:")
  print(course_example())
  image = Image.fromarray(load_image(FLAGS.image)).convert("L")
  scale = FLAGS.size / min(image.size)
  image = image.resize((round(image.width * scale), round(image.height * scale)),
                       Image.BILINEAR)
  edge_sheet(np.asarray(image, np.float32) / 255.0).save(FLAGS.out)
  print(f"wrote {FLAGS.out}: rows = {', '.join(ops.FILTERS)}")


if __name__ == "__main__":
  launch.run(main)
