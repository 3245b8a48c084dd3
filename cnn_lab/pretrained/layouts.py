"""Where each torchvision variable lives in our models: one table of pairs per family.

A pair is `(torchvision key, our variable path, kind)`; `kind` says how the array's
layout changes (see `convert.to_ours`): "conv", "dense", ("dense_chw", C) for the
first FC after a flattened C-channel map, or "copy". `CONVERTERS[name]()` gives the
pairs of architecture `name`; `OPTIONAL` names our submodules a model may lack whose
torchvision keys are then expected in the file and left unused (GoogLeNet's
auxiliary heads, which torchvision's ImageNet file holds even for a model without them).
"""

from __future__ import annotations

import math

from cnn_lab.models.efficientnet import B0_STAGES, SCALING
from cnn_lab.models.googlenet import MODULES
from cnn_lab.models.mobilenet import V2_SETTINGS
from cnn_lab.models.mobilenet_v3 import LARGE, SMALL
from cnn_lab.models.vgg import CONFIGS
from cnn_lab.nn import make_divisible

BN = (("weight", "scale"), ("bias", "bias"), ("running_mean", "mean"), ("running_var", "var"))
RESNET_STAGES = {"resnet18": ("basic", (2, 2, 2, 2)), "resnet34": ("basic", (3, 4, 6, 3)),
                 "resnet50": ("bottleneck", (3, 4, 6, 3)),
                 "resnet101": ("bottleneck", (3, 4, 23, 3)),
                 "resnet152": ("bottleneck", (3, 8, 36, 3))}
VGG_NAMES = tuple(f"vgg{d}{s}" for d in CONFIGS for s in ("", "_bn"))
OPTIONAL = ("aux1", "aux2")


def _conv(torch_name: str, ours: str, bias: bool = False):
  pairs = [(f"{torch_name}.weight", f"{ours}.kernel", "conv")]
  return pairs + ([(f"{torch_name}.bias", f"{ours}.bias", "copy")] if bias else [])


def _bn(torch_bn: str, ours: str):
  return [(f"{torch_bn}.{t}", f"{ours}.{o}", "copy") for t, o in BN]


def _conv_bn(torch_conv: str, torch_bn: str, ours: str):
  """A ConvBNAct: conv (no bias) + BatchNorm."""
  return _conv(torch_conv, f"{ours}.conv") + _bn(torch_bn, f"{ours}.bn")


def _dense(torch_name: str, ours: str, kind="dense"):
  return [(f"{torch_name}.weight", f"{ours}.kernel", kind),
          (f"{torch_name}.bias", f"{ours}.bias", "copy")]


def alexnet_pairs():
  """torchvision's alexnet: convs at `features.0/3/6/8/10`, FCs at `classifier.1/4/6`
  (the first sees the 6x6x256 map flattened in (c, h, w) order)."""
  pairs = []
  for i, index in enumerate((0, 3, 6, 8, 10)):
    pairs += _conv(f"features.{index}", f"convs.{i}", bias=True)
  return pairs + _dense("classifier.1", "fc6", ("dense_chw", 256)) + \
      _dense("classifier.4", "fc7") + _dense("classifier.6", "fc8")


def vgg_pairs(name: str):
  """torchvision's vgg11/13/16/19 and their `_bn` twins: `features` indices match ours
  (conv, [BatchNorm,] ReLU per entry; one index per pool)."""
  batch_norm = name.endswith("_bn")
  pairs, index = [], 0
  for entry in CONFIGS[int(name[3:5])]:
    if entry == "M":
      index += 1
      continue
    pairs += _conv(f"features.{index}", f"features.{index}", bias=True)
    if batch_norm:
      pairs += _bn(f"features.{index + 1}", f"features.{index + 1}")
    index += 3 if batch_norm else 2
  return pairs + _dense("classifier.0", "fc6", ("dense_chw", 512)) + \
      _dense("classifier.3", "fc7") + _dense("classifier.6", "fc8")


def googlenet_pairs():
  """torchvision's googlenet: BasicConv2d units (`conv`, `bn`) as our ConvBNAct, the
  inception branches `branch1`, `branch2.0/1`, `branch3.0/1`, `branch4.1` (after its
  pool), the auxiliary heads `aux1/aux2` (`conv`, `fc1` over a 4x4x128 map, `fc2`)."""
  unit = lambda t, o: _conv_bn(f"{t}.conv", f"{t}.bn", o)
  pairs = unit("conv1", "conv1") + unit("conv2", "conv2") + unit("conv3", "conv3")
  for name in MODULES:
    t, o = f"inception{name}", f"inception.{name}"
    pairs += unit(f"{t}.branch1", f"{o}.b1") + unit(f"{t}.branch4.1", f"{o}.b4")
    for branch in (2, 3):
      for k in (0, 1):
        pairs += unit(f"{t}.branch{branch}.{k}", f"{o}.b{branch}.{k}")
  for aux in OPTIONAL:
    pairs += unit(f"{aux}.conv", f"{aux}.conv") + \
        _dense(f"{aux}.fc1", f"{aux}.fc1", ("dense_chw", 128)) + _dense(f"{aux}.fc2", f"{aux}.fc2")
  return pairs + _dense("fc", "fc")


def efficientnet_pairs(name: str):
  """torchvision's efficientnet_b0..b7: `features.0` the stem, `features.{s}.{j}.block`
  the j-th MBConv of stage s (expand if wider, depthwise, SqueezeExcitation fc1/fc2,
  project), `features.8` the head conv, `classifier.1` the FC."""
  width, depth, _, _ = SCALING[name.rsplit("_", 1)[1]]
  pairs = _conv_bn("features.0.0", "features.0.1", "stem")
  index = 0
  for s, (t, _, _, c_in, c_out, n) in enumerate(B0_STAGES):
    c_in, c_out = make_divisible(c_in * width), make_divisible(c_out * width)
    for j in range(int(math.ceil(n * depth))):
      p, ours, k = f"features.{s + 1}.{j}.block", f"blocks.{index}", 0
      c = c_in if j == 0 else c_out
      if make_divisible(c * t) != c:
        pairs += _conv_bn(f"{p}.0.0", f"{p}.0.1", f"{ours}.expand")
        k = 1
      pairs += _conv_bn(f"{p}.{k}.0", f"{p}.{k}.1", f"{ours}.depthwise")
      pairs += _conv(f"{p}.{k + 1}.fc1", f"{ours}.se.reduce", bias=True) + \
          _conv(f"{p}.{k + 1}.fc2", f"{ours}.se.expand", bias=True)
      pairs += _conv_bn(f"{p}.{k + 2}.0", f"{p}.{k + 2}.1", f"{ours}.project")
      index += 1
  pairs += _conv_bn("features.8.0", "features.8.1", "head")
  return pairs + _dense("classifier.1", "fc")


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
      pairs += _conv(f"{p}.{k}.fc1", f"{ours}.se.reduce", bias=True) + \
          _conv(f"{p}.{k}.fc2", f"{ours}.se.expand", bias=True)
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


def _each(names, pairs):
  return {n: (lambda n=n: pairs(n)) for n in names}


CONVERTERS = {"alexnet": alexnet_pairs, "googlenet": googlenet_pairs,
              "googlenet_aux": googlenet_pairs, "mobilenet_v2": mobilenet_v2_pairs,
              **_each(("mobilenet_v3_large", "mobilenet_v3_small"), mobilenet_v3_pairs),
              **_each([f"efficientnet_{b}" for b in SCALING], efficientnet_pairs),
              **_each(RESNET_STAGES, resnet_pairs), **_each(VGG_NAMES, vgg_pairs)}
