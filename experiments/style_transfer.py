r"""Neural style transfer (Gatys et al.): the content of one image in the style of another.

  python -m experiments.style_transfer --content=chelsea --style=immunohistochemistry \
      --workdir=/tmp/style [--extractor=mobilenet_v2|vgg19 --vgg_weights=PATH] \
      [--size=256 --steps=200 --optimizer=adam|lbfgs --alpha=10 --beta=40]

Content and style are image files or scikit-image samples by name. Writes
WORKDIR/final.png, strip.png (the image at evenly spaced steps), costs.png (content,
style and total cost against step) and results.json; prints the costs at the start
and the end and the iterations per second (compilation excluded).
"""

import json
import os

import numpy as np
from absl import flags
from PIL import Image

from cnn_lab.data.images import load_image
from cnn_lab.style import EXTRACTORS, make_extractor, run_style_transfer
from cnn_lab.train import launch
from cnn_lab.train.metrics import Progress
from cnn_lab.viz import grid
from cnn_lab.viz.curves import pyplot, save_figure

flags.DEFINE_string("content", "chelsea", "Content image (file or scikit-image sample).")
flags.DEFINE_string("style", "immunohistochemistry", "Style image (file or sample).")
flags.DEFINE_string("workdir", None, "Where the PNGs and results.json go.")
flags.DEFINE_enum("extractor", "mobilenet_v2", sorted(EXTRACTORS), "Feature extractor.")
flags.DEFINE_string("vgg_weights", None, "torchvision's vgg19 .pth (for --extractor=vgg19); "
                    "without it VGG-19 runs with random weights (timing only).")
flags.DEFINE_enum("pooling", "max", ["max", "avg"], "VGG-19's pooling (Gatys: avg).")
flags.DEFINE_string("content_layer", None, "Default: the extractor's.")
flags.DEFINE_list("style_layers", None, "LAYER:WEIGHT,... Default: the extractor's.")
flags.DEFINE_integer("size", 256, "Images are resized to size x size.")
flags.DEFINE_integer("steps", 200, "Optimisation steps.")
flags.DEFINE_enum("optimizer", "adam", ["adam", "lbfgs"], "optax.adam or optax.lbfgs.")
flags.DEFINE_float("learning_rate", 0.02, "Adam's step size (pixels in [0, 1]).")
flags.DEFINE_float("alpha", 10.0, "Content weight.")
flags.DEFINE_float("beta", 40.0, "Style weight.")
flags.DEFINE_float("tv_weight", 0.0, "Total-variation weight.")
flags.DEFINE_float("noise_ratio", 0.2, "Start = content + ratio x U(-0.5, 0.5).")
flags.DEFINE_integer("seed", 0, "Noise seed.")
flags.mark_flags_as_required(["workdir"])
FLAGS = flags.FLAGS


def _image(name: str) -> np.ndarray:
  img = Image.fromarray(load_image(name)).resize((FLAGS.size, FLAGS.size), Image.BILINEAR)
  return np.asarray(img, np.float32) / 255.0


def _style_weights() -> dict:
  if not FLAGS.style_layers:
    return EXTRACTORS[FLAGS.extractor]["style"]
  weights = {}
  for item in FLAGS.style_layers:
    layer, _, weight = item.partition(":")
    weights[layer] = float(weight or 1.0)
  return weights


def main(argv):
  del argv
  os.makedirs(FLAGS.workdir, exist_ok=True)
  content_layer = FLAGS.content_layer or EXTRACTORS[FLAGS.extractor]["content"]
  style_weights = _style_weights()
  weights = FLAGS.vgg_weights if FLAGS.extractor == "vgg19" else "imagenet"
  extractor = make_extractor(FLAGS.extractor, (content_layer, *style_weights),
                             weights=weights, pooling=FLAGS.pooling)
  every = max(1, FLAGS.steps // 20)
  progress = Progress(FLAGS.steps, 0, every)

  def report(step, costs):
    if step % every == 0 or step == FLAGS.steps:
      progress.update(step, {"train/loss": costs["total"]})

  try:
    result = run_style_transfer(
        extractor, _image(FLAGS.content), _image(FLAGS.style), content_layer=content_layer,
        style_weights=style_weights, alpha=FLAGS.alpha, beta=FLAGS.beta,
        tv_weight=FLAGS.tv_weight, noise_ratio=FLAGS.noise_ratio, steps=FLAGS.steps,
        optimizer=FLAGS.optimizer, learning_rate=FLAGS.learning_rate, seed=FLAGS.seed,
        progress=report)
  finally:
    progress.close()
  to_image = lambda a: Image.fromarray((np.clip(a, 0, 1) * 255).round().astype(np.uint8))
  to_image(result.image).save(os.path.join(FLAGS.workdir, "final.png"))
  grid([to_image(a) for _, a in result.snapshots], columns=len(result.snapshots)).save(
      os.path.join(FLAGS.workdir, "strip.png"))
  fig, ax = pyplot().subplots(figsize=(6, 3.6))
  steps = [h["step"] for h in result.history]
  for key, label in (("total", "total"), ("content", "J_content"), ("style", "J_style")):
    ax.plot(steps, [h[key] for h in result.history], label=label)
  ax.set_yscale("log")
  ax.set_xlabel("step")
  ax.set_title(f"{FLAGS.extractor}, {FLAGS.optimizer}, alpha={FLAGS.alpha}, beta={FLAGS.beta}")
  ax.legend()
  ax.grid(alpha=0.3)
  fig.tight_layout()
  save_figure(fig, os.path.join(FLAGS.workdir, "costs.png"))
  first, last = result.history[0], result.history[-1]
  rate = result.steps / result.seconds
  summary = {"extractor": FLAGS.extractor, "pretrained": extractor.pretrained,
             "optimizer": FLAGS.optimizer, "size": FLAGS.size, "steps": result.steps,
             "iterations_per_second": rate, "start": first, "end": last,
             "style_cost_fall": 1 - last["style"] / first["style"]}
  with open(os.path.join(FLAGS.workdir, "results.json"), "w") as f:
    json.dump(summary, f, indent=2)
  for name in ("content", "style", "total"):
    print(f"J_{name}: {first[name]:.6g} -> {last[name]:.6g}")
  print(f"style cost fell by {summary['style_cost_fall']:.1%}; {rate:.2f} iterations/s at "
        f"{FLAGS.size}x{FLAGS.size} ({FLAGS.extractor}"
        f"{'' if extractor.pretrained else ', random weights'}, {FLAGS.optimizer})")
  print(f"wrote {FLAGS.workdir}: final.png, strip.png, costs.png, results.json")


if __name__ == "__main__":
  launch.run(main)
