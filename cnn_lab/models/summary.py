"""Per-layer summaries: activation shape and size, parameters, multiply-accumulates.

Everything is traced with `jax.eval_shape`: no parameter or activation is allocated,
so a 66M-parameter EfficientNet-B7 at 600x600 is summarised in seconds. MACs count
the multiply-adds of convolutions (depthwise and transpose included) and dense
layers, per image, as torchvision's published figures do; pooling, normalisation
and activations are listed with 0 MACs.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
from flax import nnx

from cnn_lab.models.registry import create_model
from cnn_lab.nn import module_paths, recording


@dataclasses.dataclass
class Row:
  name: str
  kind: str
  shape: tuple[int, ...]
  size: int
  params: int
  macs: int


# Detection and segmentation presets: the input and classes they are built for
# (shapes' 8, the lecture's 4, the course's U-Net 96x128 with 23, the paper's 572 with 2,
# the course's transfer-learning MobileNetV2 at 160x160, here with 2 classes).
TASK_DEFAULTS = {"localizer": ((64, 64, 3), 8), "sliding_window_net": ((14, 14, 3), 4),
                 "yolo_tiny": ((64, 64, 3), 8), "yolo_small": ((64, 64, 3), 8),
                 "faster_rcnn": ((64, 64, 3), 8), "faster_rcnn_small": ((64, 64, 3), 8),
                 "face_embedder": ((32, 32, 3), 500),
                 "unet": ((96, 128, 3), 23), "unet_original": ((572, 572, 1), 2),
                 "mobilenet_v2_transfer": ((160, 160, 3), 2)}


def default_classes(name: str) -> int:
  if name in TASK_DEFAULTS:
    return TASK_DEFAULTS[name][1]
  return 10 if name.startswith(("lenet5", "cnn_example")) or "_cifar" in name else 1000


def default_input_shape(name: str) -> tuple[int, int, int]:
  """The input a preset is defined for: (H, W, C)."""
  if name in TASK_DEFAULTS:
    return TASK_DEFAULTS[name][0]
  if name.startswith(("lenet5", "cnn_example")):
    return (32, 32, 1 if name.startswith("lenet5") else 3)
  if "_cifar" in name:
    return (32, 32, 3)
  if name == "alexnet_original":
    return (227, 227, 3)
  if name.startswith("efficientnet_"):
    from cnn_lab.models.efficientnet import SCALING
    size = SCALING[name.split("_")[1]][2]
    return (size, size, 3)
  return (224, 224, 3)


def _own_params(module) -> int:
  state = nnx.state(module, nnx.Param)
  return int(sum(math.prod(v.shape) for v in jax.tree.leaves(state)))


def trace_rows(model: nnx.Module, input_shape, **call_kwargs) -> tuple[list[Row], tuple]:
  """Runs `model` abstractly on one `[1, *input_shape]` image; returns (rows, output shape)."""
  graphdef, state = nnx.split(model)
  rows: list[Row] = []

  def forward(state, x):
    module = nnx.merge(graphdef, state)
    names = module_paths(module)
    seen = set()
    with recording() as calls:
      y = module(x, **call_kwargs)
    for call in calls:
      first = id(call.module) not in seen
      seen.add(id(call.module))
      rows.append(Row(names.get(id(call.module), "?"), call.kind, call.out_shape[1:],
                      math.prod(call.out_shape[1:]),
                      _own_params(call.module) if first else 0, call.macs))
    return y

  out = jax.eval_shape(forward, state, jax.ShapeDtypeStruct((1, *input_shape), jnp.float32))
  return rows, jax.tree.map(lambda a: a.shape, out)


def summarize(name: str, input_shape=None, num_classes: int = 1000, **kwargs) -> dict:
  """-> {"model", "input_shape", "rows", "params", "macs", "output_shape"}."""
  h, w, c = input_shape or default_input_shape(name)
  model = create_model(name, rngs=None, abstract=True, num_classes=num_classes,
                       in_channels=c, input_size=h if h == w else (h, w), **kwargs)
  rows, out = trace_rows(model, (h, w, c))
  return {"model": name, "input_shape": (h, w, c), "rows": rows,
          "params": _own_params(model), "macs": sum(r.macs for r in rows),
          "output_shape": out}


def format_summary(summary: dict) -> str:
  """The course's table: layer, activation shape, activation size, parameters, MACs."""
  header = ("layer", "kind", "activation shape", "activation size", "# parameters", "MACs")
  lines = [(r.name, r.kind, str(r.shape), f"{r.size:,}", f"{r.params:,}", f"{r.macs:,}")
           for r in summary["rows"]]
  h, w, c = summary["input_shape"]
  lines.insert(0, ("input", "", str((h, w, c)), f"{h * w * c:,}", "0", "0"))
  widths = [max(len(x[i]) for x in [header, *lines]) for i in range(len(header))]
  fmt = lambda cells: "  ".join(x.rjust(wd) if i >= 3 else x.ljust(wd)
                                for i, (x, wd) in enumerate(zip(cells, widths))).rstrip()
  row_params = sum(r.params for r in summary["rows"])
  table = [fmt(header), fmt(["-" * wd for wd in widths]), *map(fmt, lines)]
  table.append(f"total: {summary['params']:,} parameters "
               f"({row_params:,} in the listed layers), {summary['macs']:,} MACs "
               f"({summary['macs'] / 1e9:.3f} G) per {h}x{w}x{c} image")
  return "\n".join(table)


def zoo_markdown(names=None) -> str:
  """A markdown table of every preset at its own input: input, parameters, MACs."""
  from cnn_lab.models.registry import list_models
  lines = ["| model | input | classes | parameters | MACs |", "|---|---|---:|---:|---:|"]
  for name in names or list_models():
    classes = default_classes(name)
    s = summarize(name, num_classes=classes)
    h, w, c = s["input_shape"]
    lines.append(f"| {name} | {h}x{w}x{c} | {classes} | {s['params']:,} | "
                 f"{s['macs'] / 1e9:.3f} G |" if s["macs"] >= 1e7 else
                 f"| {name} | {h}x{w}x{c} | {classes} | {s['params']:,} | {s['macs']:,} |")
  return "\n".join(lines)
