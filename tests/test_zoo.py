"""The zoo against its references: parameter counts and MACs (no allocation), size limits."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from cnn_lab import nn
from cnn_lab.models import create_model, list_models, param_count
from cnn_lab.models.efficientnet import compound_coefficients
from cnn_lab.models.summary import summarize, trace_rows

TORCHVISION_PARAMS = {  # 1000 classes at 224x224 (EfficientNet at its own resolution)
    "alexnet": 61_100_840, "vgg11": 132_863_336, "vgg13": 133_047_848,
    "vgg16": 138_357_544, "vgg19": 143_667_240, "vgg11_bn": 132_868_840,
    "vgg13_bn": 133_053_736, "vgg16_bn": 138_365_992, "vgg19_bn": 143_678_248,
    "resnet18": 11_689_512, "resnet34": 21_797_672, "resnet50": 25_557_032,
    "resnet101": 44_549_160, "resnet152": 60_192_808, "googlenet": 6_624_904,
    "googlenet_aux": 13_004_888, "mobilenet_v2": 3_504_872,
    "mobilenet_v3_large": 5_483_032, "mobilenet_v3_small": 2_542_856,
    "efficientnet_b0": 5_288_548, "efficientnet_b1": 7_794_184,
    "efficientnet_b2": 9_109_994, "efficientnet_b3": 12_233_232,
    "efficientnet_b4": 19_341_616, "efficientnet_b5": 30_389_784,
    "efficientnet_b6": 43_040_704, "efficientnet_b7": 66_347_960,
}
OTHER_REFERENCES = {
    ("resnet20_cifar", 10): 269_722, ("resnet56_cifar", 10): 853_018,  # He et al., option A
    ("mobilenet_v1", 1000): 4_231_976,  # Keras' trainable parameters
    ("alexnet_original", 1000): 60_965_224,  # 96-256-384-384-256, two-group convs
}


@pytest.mark.parametrize("name", sorted(TORCHVISION_PARAMS))
def test_torchvision_parameter_counts(name):
  assert param_count(name) == TORCHVISION_PARAMS[name]


@pytest.mark.parametrize("key", sorted(OTHER_REFERENCES))
def test_other_reference_counts(key):
  name, classes = key
  assert param_count(name, num_classes=classes) == OTHER_REFERENCES[key]


@pytest.mark.parametrize("name,gmacs", [("alexnet", 0.714), ("vgg16", 15.47),
                                        ("resnet18", 1.814), ("resnet50", 4.089),
                                        ("mobilenet_v2", 0.30), ("efficientnet_b0", 0.39),
                                        ("mobilenet_v3_large", 0.22),
                                        ("mobilenet_v3_small", 0.06)])
def test_macs_match_torchvision(name, gmacs):
  summary = summarize(name)
  assert round(summary["macs"] / 1e9, len(str(gmacs).split(".")[1])) == gmacs
  assert summary["params"] == sum(r.params for r in summary["rows"])


def test_vgg_heads():
  # BN-VGG-11 features (9,225,984) + a 512 -> 8 FC (4,104) with the CIFAR-style head
  assert param_count("vgg11_bn", head="cifar", num_classes=8) == 9_230_088
  with pytest.raises(ValueError, match="head: expected 'imagenet' or 'cifar'"):
    create_model("vgg11", rngs=nnx.Rngs(0), head="tiny")


def test_one_by_one_convolution_lecture_example():
  x = (28, 28, 192)

  class Direct(nnx.Module):
    def __init__(self, rngs):
      self.conv = nn.Conv(192, 32, 5, padding="SAME", rngs=rngs)

    def __call__(self, x):
      return self.conv(x)

  class Bottleneck(nnx.Module):
    def __init__(self, rngs):
      self.reduce = nn.Conv(192, 16, 1, rngs=rngs)
      self.conv = nn.Conv(16, 32, 5, padding="SAME", rngs=rngs)

    def __call__(self, x):
      return self.conv(self.reduce(x))

  macs = lambda cls: sum(r.macs for r in trace_rows(nnx.eval_shape(lambda: cls(nnx.Rngs(0))),
                                                    x)[0])
  assert macs(Direct) == 120_422_400
  assert macs(Bottleneck) == 12_443_648


def test_course_cnn_example_table():
  rows = summarize("cnn_example", num_classes=10)["rows"]
  assert [r.size for r in rows] == [6272, 1568, 1600, 400, 120, 84, 10]
  assert [r.params for r in rows] == [608, 0, 3216, 0, 48120, 10164, 850]


def test_compound_scaling_coefficients():
  c = compound_coefficients(1)
  assert c["depth"] == pytest.approx(1.2) and c["width"] == pytest.approx(1.1)
  assert c["input_size"] == 258 and c["flops_factor"] == pytest.approx(1.92, abs=0.01)
  assert compound_coefficients(0)["input_size"] == 224


@pytest.mark.parametrize("name,minimum", [("alexnet", 63), ("vgg16", 32), ("resnet18", 33),
                                          ("resnet20_cifar", 8), ("googlenet", 15),
                                          ("googlenet_aux", 15), ("mobilenet_v2", 32),
                                          ("efficientnet_b0", 32), ("alexnet_original", 67)])
def test_minimum_input_size_works_and_below_fails_clearly(name, minimum):
  summary = summarize(name, (minimum, minimum, 3), num_classes=10)
  assert summary["output_shape"] == (1, 10) or summary["output_shape"][0] == (1, 10)
  with pytest.raises(ValueError, match=f"input_size: expected >= {minimum}"):
    create_model(name, rngs=nnx.Rngs(0), input_size=minimum - 1)


def test_unknown_model_lists_valid_names():
  with pytest.raises(ValueError, match=r"model: expected one of \[.*'resnet50'.*\], "
                     r"received 'resnet51'"):
    create_model("resnet51", rngs=nnx.Rngs(0))
  assert len(list_models()) >= 50


# GoogLeNet's aux heads, EfficientNet's stochastic depth and MobileNetV2 take train steps
# in tests/test_zoo_train.py; these are the shortcut variants it does not cover.
@pytest.mark.parametrize("name", ["resnet20_cifar", "plain20_cifar", "resnet20_cifar_b"])
def test_cifar_resnet_shortcut_variants_train_a_step(name):
  import optax

  from cnn_lab.train.state import create_train_state
  from cnn_lab.train.steps import make_train_step
  from cnn_lab.train.tasks.classification import Classification
  model = create_model(name, rngs=nnx.Rngs(0), num_classes=6, input_size=32)
  tx = optax.sgd(0.01)
  graphdef, state = create_train_state(model, tx, jax.random.key(0))
  batch = {"image": jnp.ones((2, 32, 32, 3)), "label": jnp.arange(2)}
  new_state, metrics = jax.jit(make_train_step(graphdef, tx, Classification()))(state, batch)
  assert np.isfinite(float(metrics["loss"])) and int(new_state.step) == 1


def _documented_counts():
  import os
  import re

  from tests.helpers import ROOT
  with open(os.path.join(ROOT, "docs", "zoo.md")) as f:
    rows = [line.split("|")[1:-1] for line in f if re.match(r"\| \w", line)]
  return {r[0].strip(): (int(r[2]), int(r[3].replace(",", ""))) for r in rows[1:]}


def test_every_preset_matches_the_documented_zoo_table():
  documented = _documented_counts()
  assert sorted(documented) == list_models()
  references = {**{(n, 1000): p for n, p in TORCHVISION_PARAMS.items()}, **OTHER_REFERENCES}
  for name, (classes, params) in documented.items():
    if (name, classes) in references:  # counted by the reference tests above
      assert params == references[name, classes], name
    else:
      assert param_count(name, num_classes=classes) == params, name


@pytest.mark.parametrize("name, epsilon, momentum", [
    ("efficientnet_b0", 1e-5, 0.9), ("efficientnet_b5", 1e-3, 0.99),
    ("mobilenet_v3_small", 1e-3, 0.99), ("mobilenet_v2", 1e-5, 0.9)])
def test_batchnorm_epsilon_and_momentum_are_torchvisions(name, epsilon, momentum):
  """torchvision's B0-B4 and MobileNetV2 use BatchNorm's defaults (epsilon 1e-5, PyTorch
  momentum 0.1), B5-B7 and MobileNetV3 epsilon 1e-3 and momentum 0.01: its weights need
  the epsilons, its recipes the momenta (flax's momentum is 1 - PyTorch's)."""
  from cnn_lab.nn.layers import BatchNorm
  model = create_model(name, abstract=True, rngs=nnx.Rngs(0))
  norms = [m for _, m in nnx.iter_graph(model) if isinstance(m, BatchNorm)]
  assert norms and {(m.epsilon, m.momentum) for m in norms} == {(epsilon, momentum)}


def test_mobilenet_v3_builds_at_its_minimum_input_with_hard_sigmoid_gates():
  """Shapes only (the converter's round trip runs MobileNetV3 Small for real)."""
  for name in ("mobilenet_v3_large", "mobilenet_v3_small"):
    model = create_model(name, num_classes=5, input_size=32, abstract=True,
                         rngs=nnx.Rngs(0))
    out = nnx.eval_shape(lambda m: m(jnp.zeros((2, 32, 32, 3))), model)
    assert out.shape == (2, 5)
    ses = [m for _, m in nnx.iter_graph(model) if isinstance(m, nn.SqueezeExcite)]
    assert ses and all(m.gate is jax.nn.hard_sigmoid for m in ses)
