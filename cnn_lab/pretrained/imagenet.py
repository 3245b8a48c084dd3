"""ImageNet classifiers from torchvision weights: class names, preprocessing, loading.

Preprocessing as torchvision's weights expect it, equal to its evaluation transform
to the pixel: resize the shorter side to 256 (PIL bilinear, the long side truncated as
torchvision does), centre-crop 224 (offsets rounded as torchvision does), scale to
[0, 1], normalise with mean (0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225);
EfficientNets use larger sizes and bicubic resizing (`EVAL_TRANSFORMS`).
"""

from __future__ import annotations

import functools
import os

import numpy as np
from flax import nnx
from PIL import Image

from cnn_lab.errors import fail
from cnn_lab.models import check_concrete, create_model
from cnn_lab.models.common import IMAGENET_MEAN, IMAGENET_STD
from cnn_lab.pretrained.convert import load_torchvision
from cnn_lab.pretrained.torch_reader import load_torch_checkpoint
from cnn_lab.pretrained.weights import KNOWN, weights_path

MEAN, STD = np.array(IMAGENET_MEAN, np.float32), np.array(IMAGENET_STD, np.float32)


@functools.lru_cache(maxsize=1)
def class_names() -> tuple[str, ...]:
  """The 1,000 ImageNet-1k class names in torchvision's index order."""
  with open(os.path.join(os.path.dirname(__file__), "imagenet_classes.txt")) as f:
    return tuple(line.rstrip("\n") for line in f)


def eval_geometry(width: int, height: int, size: int = 224, resize: int = 256
                  ) -> tuple[int, int, int, int]:
  """torchvision's `Resize(resize)` then `CenterCrop(size)` on a `width x height` image
  -> (resized width, resized height, crop left, crop top), computed as torchvision
  does: the short side becomes `resize` and the long one `int(resize * long / short)`
  (truncated), and the crop offsets are `int(round((side - size) / 2))` (Python's
  round: halves to even)."""
  short, long = sorted((width, height))
  new_short, new_long = resize, int(resize * long / short)
  new_w, new_h = (new_short, new_long) if width <= height else (new_long, new_short)
  return (new_w, new_h, int(round((new_w - size) / 2.0)), int(round((new_h - size) / 2.0)))


# torchvision's evaluation transform for its original (IMAGENET1K_V1) weights of each
# architecture, as (crop size, resize, interpolation); the rest use (224, 256, bilinear).
# Its later V2 weights (ResNet-50/101/152, MobileNetV2/V3-Large, EfficientNet-B1) were
# evaluated with other sizes: pass theirs to `preprocess`.
EVAL_TRANSFORMS = {
    "efficientnet_b0": (224, 256, "bicubic"), "efficientnet_b1": (240, 256, "bicubic"),
    "efficientnet_b2": (288, 288, "bicubic"), "efficientnet_b3": (300, 320, "bicubic"),
    "efficientnet_b4": (380, 384, "bicubic"), "efficientnet_b5": (456, 456, "bicubic"),
    "efficientnet_b6": (528, 528, "bicubic"), "efficientnet_b7": (600, 600, "bicubic")}
# model options torchvision sets when it builds an architecture for its ImageNet weights
WEIGHTS_MODEL_OPTIONS = {"googlenet": dict(transform_input=True)}
INTERPOLATIONS = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC}


def eval_transform(name: str) -> tuple[int, int, str]:
  """(crop size, resize, interpolation) of torchvision's V1 weights for `name`."""
  return EVAL_TRANSFORMS.get(name, (224, 256, "bilinear"))


def preprocess(image: np.ndarray, size: int = 224, resize: int = 256,
               interpolation: str = "bilinear") -> np.ndarray:
  """uint8 `[H, W, 3]` -> float32 `[size, size, 3]`, torchvision's evaluation transform
  to the pixel: PIL resize (`interpolation`) and centre crop with `eval_geometry`'s
  sizes and offsets, then scaling to [0, 1] and normalising."""
  if size > resize:
    raise fail("size", f"at most resize={resize} (the crop lies inside the image)", size)
  if interpolation not in INTERPOLATIONS:
    raise fail("interpolation", f"one of {sorted(INTERPOLATIONS)}", interpolation)
  img = Image.fromarray(np.asarray(image, np.uint8))
  new_w, new_h, left, top = eval_geometry(img.width, img.height, size, resize)
  img = img.resize((new_w, new_h), INTERPOLATIONS[interpolation])
  x = np.asarray(img.crop((left, top, left + size, top + size)), np.float32) / 255.0
  return (x - MEAN) / STD


def load_imagenet_weights(model: nnx.Module, name: str, weights: str, *,
                          headless: bool = False) -> nnx.Module:
  """Copies torchvision's ImageNet weights for architecture `name` into `model`:
  `weights` is "imagenet" (the files this project fetches) or a torchvision `.pth` path;
  `headless`: `model` lacks the ImageNet classifier (see `load_torchvision`)."""
  if weights == "imagenet":
    if name not in KNOWN:
      raise fail("weights", f"a .pth path for {name} (only {sorted(KNOWN)} are fetched "
                 "automatically)", weights)
    weights = weights_path(name)
  return load_torchvision(model, name, load_torch_checkpoint(weights), headless=headless)


def load_pretrained(model: nnx.Module, weights: str) -> nnx.Module:
  """Loads ImageNet `weights` into the part of `model` it names: a model built on an
  ImageNet classifier declares `pretrained_base = (attribute, architecture)`."""
  if not hasattr(model, "pretrained_base"):
    raise fail("model.weights", "no weights for a model without `pretrained_base`", weights)
  attribute, architecture = model.pretrained_base
  load_imagenet_weights(getattr(model, attribute), architecture, weights, headless=True)
  return model


def pretrained_model(name: str = "mobilenet_v2", weights: str = "imagenet", *,
                     impl: str = "xla", **model_kwargs) -> nnx.Module:
  """Our ImageNet classifier `name` with torchvision's weights (see `load_imagenet_weights`),
  built with the options torchvision builds it with for them (`WEIGHTS_MODEL_OPTIONS`)."""
  model_kwargs = {**WEIGHTS_MODEL_OPTIONS.get(name, {}), **model_kwargs}
  model = create_model(name, rngs=nnx.Rngs(0), num_classes=1000, impl=impl, abstract=True,
                       **model_kwargs)  # every value comes from the file
  return check_concrete(load_imagenet_weights(model, name, weights), weights)
