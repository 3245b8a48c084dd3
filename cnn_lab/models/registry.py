"""Named model presets: `create_model("lenet5", num_classes=10, rngs=nnx.Rngs(0))`."""

from __future__ import annotations

import jax
import numpy as np
from flax import nnx

from cnn_lab.errors import fail
from cnn_lab.models import (alexnet, detection, efficientnet, embedding, googlenet, lenet,
                            mobilenet, resnet, transfer, unet, vgg)

# One line a family: its file's PRESETS (name -> constructor).
_REGISTRY = {**lenet.PRESETS, **alexnet.PRESETS, **vgg.PRESETS, **resnet.PRESETS,
             **googlenet.PRESETS, **mobilenet.PRESETS, **efficientnet.PRESETS,
             **detection.PRESETS, **unet.PRESETS, **transfer.PRESETS}


def _face_embedder(**kwargs):
  return embedding.Embedder(build_backbone=create_model, **kwargs)


_REGISTRY["face_embedder"] = _face_embedder  # a zoo backbone with an embedding head


def list_models() -> list[str]:
  return sorted(_REGISTRY)


def create_model(name: str, *, rngs: nnx.Rngs, **kwargs) -> nnx.Module:
  """Builds the preset `name`; kwargs (num_classes, input_size, in_channels, impl, ...)
  go to the family's constructor."""
  if name not in _REGISTRY:
    raise fail("model", f"one of {list_models()}", name)
  return _REGISTRY[name](rngs=rngs, **kwargs)


def param_count(name_or_factory, filter_=nnx.Param, **kwargs) -> int:
  """Number of parameters (BatchNorm statistics excluded), without allocating them."""
  factory = name_or_factory if callable(name_or_factory) else \
      lambda: create_model(name_or_factory, rngs=nnx.Rngs(0), **kwargs)
  abstract = nnx.eval_shape(factory)
  return int(sum(np.prod(v.shape) for v in jax.tree.leaves(nnx.state(abstract, filter_))))
