"""Feature extractors for style transfer: images in [0, 1] -> activations by layer name.

* `mobilenet_v2` (default): torchvision's ImageNet MobileNetV2, which this project
  fetches itself; layers are module paths: `stem`, `blocks.0` ... `blocks.16`, `head`.
* `vgg19`: Gatys et al.'s network, from torchvision's VGG-19 file the user supplies
  (`weights=PATH`); layers are `conv1_1` ... `conv5_4` (after their ReLU), optionally
  with average instead of max pooling as in the paper.
Both normalise with ImageNet's mean and std inside, so the optimised image stays in
[0, 1].
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import nnx

from cnn_lab import nn
from cnn_lab.errors import fail
from cnn_lab.models import create_model
from cnn_lab.models.common import IMAGENET_MEAN, IMAGENET_STD
from cnn_lab.models.vgg import CONFIGS
from cnn_lab.viz.features import tapped_function

# Default content layer and style layer weights. MobileNetV2's BatchNorm-scaled Gram
# matrices are far smaller than VGG's, so its layer weights are 100x the course's 0.2:
# with alpha=10, beta=40 the style term then takes a share like VGG's (measured: the
# style cost falls by 98% in 200 Adam steps at 256x256, against 83% with 0.2).
EXTRACTORS = {
    "mobilenet_v2": dict(content="blocks.9", style={"stem": 20.0, "blocks.2": 20.0,
                                                    "blocks.5": 20.0, "blocks.9": 20.0,
                                                    "blocks.13": 20.0}),
    "vgg19": dict(content="conv4_2", style={"conv1_1": 0.2, "conv2_1": 0.2, "conv3_1": 0.2,
                                            "conv4_1": 0.2, "conv5_1": 0.2}),
}
MEAN, STD = jnp.array(IMAGENET_MEAN), jnp.array(IMAGENET_STD)


@dataclasses.dataclass(frozen=True)
class Extractor:
  name: str
  layers: tuple[str, ...]
  forward: Callable  # images [N, H, W, 3] in [0, 1] -> {layer: [N, h, w, c]}
  pretrained: bool

  def __call__(self, images) -> dict:
    return self.forward(images)


def vgg19_layer_indices() -> dict[str, int]:
  """conv{block}_{i} -> the index of that convolution in VGG-19's `features`."""
  names, index, block, i = {}, 0, 1, 1
  for entry in CONFIGS[19]:
    if entry == "M":
      block, i, index = block + 1, 1, index + 1
      continue
    names[f"conv{block}_{i}"] = index
    i, index = i + 1, index + 2  # conv, ReLU
  return names


def _valid_layers(name: str) -> list[str]:
  if name == "vgg19":
    return list(vgg19_layer_indices())
  return ["stem", *(f"blocks.{i}" for i in range(17)), "head"]


def make_extractor(name: str = "mobilenet_v2", layers=None, *, weights: str | None = "imagenet",
                   pooling: str = "max", impl: str = "scratch") -> Extractor:
  """Builds extractor `name` for `layers` (default: its content and style layers).

  weights: "imagenet" (MobileNetV2: fetched), a torchvision .pth path, or None (random
  weights, e.g. for timing); pooling: "max" or "avg" (VGG-19 only).
  """
  if name not in EXTRACTORS:
    raise fail("extractor", f"one of {sorted(EXTRACTORS)}", name)
  defaults = EXTRACTORS[name]
  layers = tuple(layers or (defaults["content"], *defaults["style"]))
  valid = _valid_layers(name)
  unknown = [layer for layer in layers if layer not in valid]
  if unknown:
    raise fail("layers", f"names among {valid}", unknown)
  if name == "vgg19" and weights == "imagenet":
    raise fail("weights", "a path to torchvision's vgg19 .pth (it is not fetched here), or "
               "None for random weights", weights)
  if pooling not in ("max", "avg"):
    raise fail("pooling", "'max' or 'avg'", pooling)
  model = create_model(name, rngs=nnx.Rngs(0), num_classes=1000, impl=impl)
  if weights:
    from cnn_lab.pretrained.imagenet import load_imagenet_weights
    load_imagenet_weights(model, name, weights)
  if name == "vgg19":
    indices = vgg19_layer_indices()
    if pooling == "avg":  # Gatys et al.: average pooling gives smoother results
      for i, layer in enumerate(model.features):
        if isinstance(layer, nn.MaxPool):
          model.features[i] = nn.AvgPool(2, impl=impl)
    paths = {layer: f"features.{indices[layer]}" for layer in layers}
    post = jax.nn.relu  # the paper's features are the ReLU outputs
  else:
    paths, post = {layer: layer for layer in layers}, (lambda a: a)
  tapped = tapped_function(model, sorted(set(paths.values())))

  def forward(images):
    _, acts = tapped((images - MEAN) / STD)
    return {layer: post(acts[path]) for layer, path in paths.items()}

  # jitted: called eagerly (the content's and the style's targets, the final costs) the
  # network ran op by op, compiling each: 424 programs, 17 s of a 32x32 run of 8 steps
  return Extractor(name, layers, jax.jit(forward), pretrained=bool(weights))
