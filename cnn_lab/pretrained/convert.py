"""torchvision state dicts -> our models, by name and layout.

Layouts: torch conv kernels are OIHW (depthwise: C,1,H,W), ours HWIO; torch dense
weights are [out, in], ours [in, out]; BatchNorm weight/bias/running_mean/running_var
are our scale/bias/mean/var (epsilon as each torchvision family has it). VGG's first FC sees the
flattened 7x7x512 map in (c, h, w) order in torch and (h, w, c) here, so its rows are
permuted. `num_batches_tracked` is ignored.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from flax import nnx

from cnn_lab.errors import InputError, fail
from cnn_lab.models.mobilenet import V2_SETTINGS
from cnn_lab.models.mobilenet_v3 import LARGE, SMALL
from cnn_lab.models.vgg import CONFIGS

BN = (("weight", "scale"), ("bias", "bias"), ("running_mean", "mean"), ("running_var", "var"))
RESNET_STAGES = {"resnet18": ("basic", (2, 2, 2, 2)), "resnet34": ("basic", (3, 4, 6, 3)),
                 "resnet50": ("bottleneck", (3, 4, 6, 3)),
                 "resnet101": ("bottleneck", (3, 4, 23, 3)),
                 "resnet152": ("bottleneck", (3, 8, 36, 3))}
VGG_NAMES = ("vgg11", "vgg13", "vgg16", "vgg19")


class CheckpointMismatchError(InputError):
  """A state dict that does not fit the model: names every missing, unexpected and
  mis-shaped key."""


def _conv(torch_name: str, ours: str):
  return [(f"{torch_name}.weight", f"{ours}.kernel", "conv")]


def _conv_bn(torch_conv: str, torch_bn: str, ours: str):
  """A ConvBNAct: conv (no bias) + BatchNorm."""
  return _conv(torch_conv, f"{ours}.conv") + \
      [(f"{torch_bn}.{t}", f"{ours}.bn.{o}", "copy") for t, o in BN]


def _dense(torch_name: str, ours: str, kind: str = "dense"):
  return [(f"{torch_name}.weight", f"{ours}.kernel", kind),
          (f"{torch_name}.bias", f"{ours}.bias", "copy")]


def mobilenet_v2_pairs():
  """(torch key, our path, kind) for torchvision's mobilenet_v2."""
  pairs = _conv_bn("features.0.0", "features.0.1", "stem")
  index = 0
  for t, _, n, _ in V2_SETTINGS:
    for _ in range(n):
      p, ours = f"features.{index + 1}.conv", f"blocks.{index}"
      if t == 1:
        pairs += _conv_bn(f"{p}.0.0", f"{p}.0.1", f"{ours}.depthwise")
        pairs += _conv_bn(f"{p}.1", f"{p}.2", f"{ours}.project")
      else:
        pairs += _conv_bn(f"{p}.0.0", f"{p}.0.1", f"{ours}.expand")
        pairs += _conv_bn(f"{p}.1.0", f"{p}.1.1", f"{ours}.depthwise")
        pairs += _conv_bn(f"{p}.2", f"{p}.3", f"{ours}.project")
      index += 1
  pairs += _conv_bn("features.18.0", "features.18.1", "head")
  return pairs + _dense("classifier.1", "fc")


def mobilenet_v3_pairs(name: str):
  """torchvision's mobilenet_v3_large / _small: `features.0` the stem, `features.{i}.block`
  each block's Conv2dNormActivation layers in order (expand if wider, depthwise,
  SqueezeExcitation's fc1/fc2 if any, project), then the last conv; `classifier.0` and
  `classifier.3` the two linear layers."""
  blocks = LARGE if name.endswith("large") else SMALL
  pairs = _conv_bn("features.0.0", "features.0.1", "stem")
  c = 16
  for i, (_, expanded, out, se, _, _) in enumerate(blocks):
    p, ours, k = f"features.{i + 1}.block", f"blocks.{i}", 0
    if expanded != c:
      pairs += _conv_bn(f"{p}.0.0", f"{p}.0.1", f"{ours}.expand")
      k = 1
    pairs += _conv_bn(f"{p}.{k}.0", f"{p}.{k}.1", f"{ours}.depthwise")
    if se:
      k += 1
      for torch_fc, our_fc in (("fc1", "reduce"), ("fc2", "expand")):
        pairs += _conv(f"{p}.{k}.{torch_fc}", f"{ours}.se.{our_fc}") + \
            [(f"{p}.{k}.{torch_fc}.bias", f"{ours}.se.{our_fc}.bias", "copy")]
    pairs += _conv_bn(f"{p}.{k + 1}.0", f"{p}.{k + 1}.1", f"{ours}.project")
    c = out
  last = len(blocks) + 1
  pairs += _conv_bn(f"features.{last}.0", f"features.{last}.1", "head")
  return pairs + _dense("classifier.0", "hidden") + _dense("classifier.3", "fc")


def resnet_pairs(name: str):
  """torchvision's resnet18/34/50/101/152 (stride on the 3x3 conv, "v1.5")."""
  block, stages = RESNET_STAGES[name]
  pairs = _conv_bn("conv1", "bn1", "stem")
  convs = 2 if block == "basic" else 3
  index = 0
  for stage, repeats in enumerate(stages):
    for i in range(repeats):
      p, ours = f"layer{stage + 1}.{i}", f"blocks.{index}"
      for k in range(1, convs + 1):
        pairs += _conv_bn(f"{p}.conv{k}", f"{p}.bn{k}", f"{ours}.conv{k}")
      if i == 0 and (stage > 0 or block == "bottleneck"):
        pairs += _conv_bn(f"{p}.downsample.0", f"{p}.downsample.1", f"{ours}.shortcut")
      index += 1
  return pairs + _dense("fc", "fc")


def vgg_pairs(name: str):
  """torchvision's vgg11/13/16/19 (without BatchNorm): `features` indices match ours."""
  pairs, index = [], 0
  for entry in CONFIGS[int(name[3:])]:
    if entry == "M":
      index += 1
      continue
    pairs += _conv(f"features.{index}", f"features.{index}") + \
        [(f"features.{index}.bias", f"features.{index}.bias", "copy")]
    index += 2  # conv, ReLU
  return pairs + _dense("classifier.0", "fc6", "dense_chw") + _dense("classifier.3", "fc7") + \
      _dense("classifier.6", "fc8")


CONVERTERS = {"mobilenet_v2": mobilenet_v2_pairs,
              **{n: (lambda n=n: mobilenet_v3_pairs(n)) for n in ("mobilenet_v3_large",
                                                               "mobilenet_v3_small")},
              **{n: (lambda n=n: resnet_pairs(n)) for n in RESNET_STAGES},
              **{n: (lambda n=n: vgg_pairs(n)) for n in VGG_NAMES}}


def _to_ours(array: np.ndarray, kind: str, target_shape) -> np.ndarray:
  if kind == "conv":
    return np.transpose(array, (2, 3, 1, 0)) if array.ndim == 4 else array
  if kind == "dense":
    return array.T
  if kind == "dense_chw":  # [out, c*h*w] over a 7x7x512 map -> [h*w*c, out]
    out = array.shape[0]
    h = w = int(round((target_shape[0] / 512) ** 0.5))
    return array.reshape(out, 512, h, w).transpose(2, 3, 1, 0).reshape(-1, out)
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
  pairs = [p for p in all_pairs if not (headless and p[1].split(".")[0] in CLASSIFIERS)]
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
    value = _to_ours(np.asarray(state_dict[torch_key]), kind, target.shape)
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
