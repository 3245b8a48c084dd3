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

# One line a family: its file's PRESETS (name -> constructor).
_REGISTRY = {**lenet.PRESETS, **alexnet.PRESETS, **vgg.PRESETS, **resnet.PRESETS,
             **googlenet.PRESETS, **mobilenet.PRESETS, **mobilenet_v3.PRESETS,
             **efficientnet.PRESETS,
             **detection.PRESETS, **unet.PRESETS, **transfer.PRESETS}


def _face_embedder(**kwargs):
  return embedding.Embedder(build_backbone=create_model, **kwargs)


_REGISTRY["face_embedder"] = _face_embedder  # a zoo backbone with an embedding head


def _host_counted_rngs() -> nnx.Rngs:
  """`nnx.Rngs(0)` whose streams count their draws in numpy, for building under a trace.

  A stream's count is a JAX array; under `nnx.eval_shape` each draw stages `count + 1`,
  and flax's store of it asks the new tracer for its sharding, whose error message walks
  the whole trace so far (jax `_origin_msg`): building EfficientNet-B7 abstractly took
  9.4 s, 1.6 s with host counts. The keys drawn are the same (`fold_in(key, n)`).

  Each read of a count is a copy: a stream draws `fold_in(key, count[...])` and then
  adds one to `count[...]` in place, and on CPU JAX may use a numpy buffer without
  copying it, so a draw still queued would read the count already advanced."""
  rngs = nnx.Rngs(0)
  for stream in vars(rngs).values():
    if isinstance(stream, nnx.RngStream):
      stream.count = _HostCount(np.zeros(stream.count.shape, np.uint32), tag=stream.tag)
  return rngs


class _HostCount(nnx.RngCount):
  """A stream's count in numpy whose every read is a copy."""

  def get_value(self, **kwargs):
    value = super().get_value(**kwargs)
    return value.copy() if isinstance(value, np.ndarray) else value


def abstract_model(factory) -> nnx.Module:
  """`factory(rngs=...)`'s model with shapes and dtypes only: nothing allocated or
  compiled (`nnx.eval_shape`)."""
  return nnx.eval_shape(lambda: factory(rngs=_host_counted_rngs()))


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
