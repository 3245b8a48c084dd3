"""What-ConvNets-learn tools on a small trained run: activations, receptive fields, top
patches, saliency, and the visualize / augmentations commands."""

import os
import subprocess
import sys

import numpy as np
import pytest
from flax import nnx

from cnn_lab.models import create_model
from cnn_lab.viz import features as F
from tests.helpers import ROOT


@pytest.fixture(scope="module")
def resnet():
  return create_model("resnet20_cifar", rngs=nnx.Rngs(0), num_classes=8, input_size=32)


def test_activations_receptive_field_and_patches(resnet):
  x = np.random.default_rng(0).normal(size=(6, 32, 32, 3)).astype(np.float32)
  acts = F.activations(resnet, x, ["stem", "blocks.4"])
  assert acts["stem"].shape == (6, 32, 32, 16) and acts["blocks.4"].shape == (6, 16, 16, 32)
  # stem: one 3x3 conv, stride 1, padding 1 -> a 3-pixel field starting one pixel up-left.
  assert F.receptive_field(resnet, "stem", (32, 32, 3)) == (3, -1, -1, 1.0)
  size, _, _, stride = F.receptive_field(resnet, "blocks.4", (32, 32, 3))
  assert stride == 2.0 and size > 9
  shown = (np.arange(6 * 32 * 32 * 3) % 255).reshape(6, 32, 32, 3).astype(np.uint8)
  crops = F.top_patches(resnet, x, shown, "blocks.4", [0, 5], k=4)
  assert len(crops[0]) == 4 and all(c.shape[-1] == 3 and c.size for c in crops[5])
  heat, label = F.saliency(resnet, x[0])
  assert heat.shape == (32, 32) and 0 <= label < 8 and float(heat.max()) > 0
  assert F.first_conv_kernel(resnet, (32, 32, 3)).shape == (3, 3, 3, 16)
  with pytest.raises(ValueError, match="layer: expected a module path of the model"):
    F.activations(resnet, x, ["blocks.42"])


def test_visualize_and_augmentations_commands_write_pngs(tmp_path):
  from cnn_lab.train.launch import load_config
  from cnn_lab.train.loop import train_and_evaluate
  config = load_config(os.path.join(ROOT, "experiments", "configs", "resnet_shapes.py:test"))
  train_and_evaluate(config, str(tmp_path / "run"))
  out = subprocess.run([sys.executable, "-m", "experiments.visualize",
                        f"--workdir={tmp_path / 'run'}", "--layers=blocks.1", "--units=2",
                        f"--out={tmp_path / 'vis'}"], cwd=ROOT, capture_output=True,
                       text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-2000:]
  for name in ("filters", "saliency", "patches_blocks.1", "activations_blocks.1"):
    assert (tmp_path / "vis" / f"{name}.png").exists()
  out = subprocess.run([sys.executable, "-m", "experiments.augmentations",
                        f"--out={tmp_path / 'aug.png'}", "--dataset=shapes/single_32"],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-2000:]
  assert (tmp_path / "aug.png").exists()


def test_edges_command_prints_the_course_example_and_draws_each_filter(tmp_path):
  from cnn_lab.viz.edges import course_example, edge_sheet
  np.testing.assert_array_equal(course_example(), np.tile([0.0, 30.0, 30.0, 0.0], (4, 1)))
  ramp = np.tile(np.linspace(0.0, 1.0, 12, dtype=np.float32), (10, 1))
  sheet = edge_sheet(ramp)
  assert sheet.size[0] > 4 * 10 and sheet.size[1] > 3 * 8  # 3 filters x 4 panels
  out = subprocess.run([sys.executable, "-m", "experiments.edges", "--size=48",
                        f"--out={tmp_path / 'edges.png'}"], cwd=ROOT, capture_output=True,
                       text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-2000:]
  assert "30." in out.stdout and (tmp_path / "edges.png").exists()
