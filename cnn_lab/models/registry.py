"""Named model presets: `create_model("lenet5", num_classes=10, rngs=nnx.Rngs(0))`."""

from __future__ import annotations

import functools
import inspect

import jax
import numpy as np
from flax import nnx

from cnn_lab.errors import fail
from cnn_lab.models import (alexnet, detection, efficientnet, embedding, googlenet, lenet,
                            mobilenet, mobilenet_v3, resnet, transfer, unet, vgg)
from cnn_lab.nn.layers import StoresTracedValues

# One line a family: its file's PRESETS (name -> constructor).
_REGISTRY = {**lenet.PRESETS, **alexnet.PRESETS, **vgg.PRESETS, **resnet.PRESETS,
             **googlenet.PRESETS, **mobilenet.PRESETS, **mobilenet_v3.PRESETS,
             **efficientnet.PRESETS,
             **detection.PRESETS, **unet.PRESETS, **transfer.PRESETS}


def _face_embedder(**kwargs):
  return embedding.Embedder(build_backbone=create_model, **kwargs)


_REGISTRY["face_embedder"] = _face_embedder  # a zoo backbone with an embedding head


def _abstract_build_rngs() -> nnx.Rngs:
  """`nnx.Rngs(0)` whose streams' counts store traced values directly, for building
  under a trace (`cnn_lab.nn.layers.StoresTracedValues`).

  Under `nnx.eval_shape` each draw stages `count + 1`, and flax's store of it asked the
  new tracer for its sharding: building EfficientNet-B7 abstractly took 9.4 s that way.
  The counts stay JAX arrays (numpy counts, the first remedy, were advanced in place
  while a queued draw could still read them) and the keys drawn are `Rngs(0)`'s."""
  rngs = nnx.Rngs(0)
  for stream in vars(rngs).values():
    if isinstance(stream, nnx.RngStream):
      stream.count = _Count(stream.count.get_raw_value(), tag=stream.tag)
  return rngs


class _Count(StoresTracedValues, nnx.RngCount):
  """A stream's count (`StoresTracedValues`)."""


def abstract_model(factory) -> nnx.Module:
  """`factory(rngs=...)`'s model with shapes and dtypes only: nothing allocated or
  compiled (`nnx.eval_shape`)."""
  return nnx.eval_shape(lambda: factory(rngs=_abstract_build_rngs()))


def list_models() -> list[str]:
  return sorted(_REGISTRY)


@functools.lru_cache(maxsize=None)
def model_options(name: str) -> tuple[str, ...] | None:
  """The keyword arguments preset `name` takes (its family's constructor's, when the
  preset passes `**kwargs` on), sorted; None when they cannot be told without building
  the model from arguments it requires."""
  factory = _REGISTRY[check_name(name)]
  params = _parameters(factory)
  names = {k for k, p in params.items() if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}
  if any(p.kind is p.VAR_KEYWORD for p in params.values()):
    try:
      built = abstract_model(factory)
    except TypeError:  # a required argument: the family cannot be told this way
      return None
    names |= {k for k, p in inspect.signature(type(built).__init__).parameters.items()
              if k != "self" and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}
  return tuple(sorted(names - {"rngs"}))


def _parameters(factory) -> dict[str, inspect.Parameter]:
  """The parameters `factory` takes. nnx's metaclass shows a Module class's signature as
  `(*args, **kwargs)`, so a class's (or a `functools.partial` of one's) are read from its
  `__init__`, less `self` and what the partial binds by position; a keyword it binds
  stays, as a default the caller may override."""
  bound = 0
  if isinstance(factory, functools.partial) and isinstance(factory.func, type):
    bound, factory = len(factory.args), factory.func
  if not isinstance(factory, type):
    return dict(inspect.signature(factory).parameters)
  return dict(list(inspect.signature(factory.__init__).parameters.items())[1 + bound:])


def check_name(name: str, argument: str = "model") -> str:
  """`name` if the registry has it, else the error listing the names it has."""
  if name not in _REGISTRY:
    raise fail(argument, f"one of {list_models()}", name)
  return name


def create_model(name: str, *, rngs: nnx.Rngs, abstract: bool = False,
                 **kwargs) -> nnx.Module:
  """Builds the preset `name`; kwargs (num_classes, input_size, in_channels, impl, ...)
  go to the family's constructor. `abstract`: shapes and dtypes only (`nnx.eval_shape`,
  `rngs` unused), nothing initialised or compiled, for a model whose values a file is
  about to replace."""
  check_name(name)
  if abstract:  # the streams are made inside the trace: none of its values survive
    return abstract_model(functools.partial(_REGISTRY[name], **kwargs))
  return _REGISTRY[name](rngs=rngs, **kwargs)


def check_concrete(model: nnx.Module, source: str) -> nnx.Module:
  """Refuses a model built abstract whose values `source` did not all fill."""
  empty = [".".join(map(str, path)) for path, node in nnx.iter_graph(model)
           if isinstance(node, nnx.Variable) and
           isinstance(node.get_value(), jax.ShapeDtypeStruct)]
  if empty:
    raise fail("weights", f"values for every variable from {source}",
               f"none for {empty[:4]}{' ...' if len(empty) > 4 else ''} ({len(empty)})")
  return model


def param_count(name_or_factory, filter_=nnx.Param, **kwargs) -> int:
  """Number of parameters (BatchNorm statistics excluded), without allocating them."""
  if callable(name_or_factory):
    abstract = nnx.eval_shape(name_or_factory)
  else:
    abstract = create_model(name_or_factory, rngs=None, abstract=True, **kwargs)
  return int(sum(np.prod(v.shape) for v in jax.tree.leaves(nnx.state(abstract, filter_))))
