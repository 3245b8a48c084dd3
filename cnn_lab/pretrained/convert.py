"""torchvision state dicts -> our models, by name and layout.

Layouts: torch conv kernels are OIHW (depthwise: C,1,H,W), ours HWIO; torch dense
weights are [out, in], ours [in, out]; BatchNorm weight/bias/running_mean/running_var
are our scale/bias/mean/var (epsilon as each torchvision family has it). The first FC
after a flattened map (AlexNet's, VGG's, GoogLeNet's auxiliary heads') sees it in
(c, h, w) order in torch and (h, w, c) here, so its rows are permuted.
`num_batches_tracked` is ignored. Which key goes where: `layouts`.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from flax import nnx

from cnn_lab.errors import InputError, fail
from cnn_lab.pretrained.layouts import CONVERTERS, OPTIONAL


class CheckpointMismatchError(InputError):
  """A state dict that does not fit the model: names every missing, unexpected and
  mis-shaped key."""


def to_ours(array: np.ndarray, kind) -> np.ndarray:
  """One torchvision array in our layout (`kind` as in `layouts`); an array that cannot
  take the layout is returned as is, for the shape check to name."""
  if kind == "conv":
    return np.transpose(array, (2, 3, 1, 0)) if array.ndim == 4 else array
  if kind == "dense":
    return array.T
  if isinstance(kind, tuple) and kind[0] == "dense_chw":
    # [out, c*h*w] over a square h x w x c map -> [h*w*c, out]
    channels, (out, size) = kind[1], array.shape
    side = int(round((size / channels) ** 0.5))
    if array.ndim != 2 or side * side * channels != size:
      return array
    return array.reshape(out, channels, side, side).transpose(2, 3, 1, 0).reshape(-1, out)
  return array


# our names of the ImageNet classifier layers
CLASSIFIERS = ("fc", "fc6", "fc7", "fc8", "hidden")


def load_torchvision(model: nnx.Module, name: str, state_dict: dict, *,
                     headless: bool = False) -> nnx.Module:
  """Copies torchvision's `state_dict` for architecture `name` into `model` (in place).

  `headless`: `model` is the network without its ImageNet classifier (a transfer
  base); the classifier's keys are expected in the file and left unused.
  Raises `CheckpointMismatchError` naming missing, unexpected and mis-shaped keys;
  nothing is copied unless everything fits.
  """
  if name not in CONVERTERS:
    raise fail("name", f"one of {sorted(CONVERTERS)}", name)
  variables = {".".join(map(str, path)): node for path, node in nnx.iter_graph(model)
               if isinstance(node, nnx.Variable)}
  all_pairs = CONVERTERS[name]()
  roots = {path.split(".")[0] for path in variables}
  unused = set(CLASSIFIERS if headless else ()) | {r for r in OPTIONAL if r not in roots}
  pairs = [p for p in all_pairs if p[1].split(".")[0] not in unused]
  missing = [t for t, _, _ in pairs if t not in state_dict]
  used = {t for t, _, _ in all_pairs}
  unexpected = sorted(k for k in state_dict if k not in used and
                      not k.endswith("num_batches_tracked"))
  misshaped, values = [], {}
  for torch_key, ours, kind in pairs:
    if torch_key not in state_dict:
      continue
    if ours not in variables:
      missing.append(f"(our {ours})")
      continue
    target = variables[ours]
    value = to_ours(np.asarray(state_dict[torch_key]), kind)
    if value.shape != tuple(target.shape):
      misshaped.append(f"{torch_key} {tuple(np.shape(state_dict[torch_key]))} -> {ours} "
                       f"{tuple(target.shape)}")
      continue
    values[ours] = value
  if missing or unexpected or misshaped:
    parts = [f"{label}: {items[:8]}{' ...' if len(items) > 8 else ''} ({len(items)})"
             for label, items in (("missing", missing), ("unexpected", unexpected),
                                  ("mis-shaped", misshaped)) if items]
    raise CheckpointMismatchError(f"state_dict: expected torchvision's {name} for this "
                                  f"model, received a mismatch; " + "; ".join(parts))
  for ours, value in values.items():
    # set_value, not [...] =: the model may be abstract (built with shapes only)
    variables[ours].set_value(jnp.asarray(value, variables[ours].dtype))
  return model
