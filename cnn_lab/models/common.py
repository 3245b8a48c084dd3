"""Helpers shared by the model files."""

from __future__ import annotations

from cnn_lab.errors import fail

# The per-channel mean and std of ImageNet's RGB pixels in [0, 1], which torchvision's
# weights expect inputs normalised with.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def check_input_size(input_size: int, minimum: int, model: str) -> None:
  """The one error for an input too small for an architecture."""
  if not isinstance(input_size, int) or input_size < minimum:
    raise fail("input_size", f">= {minimum} (the minimum for {model})", input_size)


def dropout(layer, x, train: bool, rngs):
  """Applies an `nnx.Dropout` (or None) in training only."""
  if layer is None or not train:
    return x
  return layer(x, deterministic=False, rngs=rngs)
