"""Every family trains end to end on `shapes` through the one launcher (the :test presets)."""

import os

import pytest

from cnn_lab.train.launch import load_config
from cnn_lab.train.loop import train_and_evaluate
from tests.helpers import ROOT

FAMILIES = ["alexnet", "vgg", "resnet", "googlenet", "mobilenet", "efficientnet"]


@pytest.mark.parametrize("family", FAMILIES)
def test_family_trains_on_shapes(family, tmp_path):
  config = load_config(os.path.join(ROOT, "experiments", "configs",
                                    f"{family}_shapes.py:test"))
  result = train_and_evaluate(config, str(tmp_path))
  assert result["step"] == 3 and result["eval/count"] == 1000
  assert 0.0 <= result["eval/accuracy"] <= 1.0
  assert os.path.exists(tmp_path / "curves.png")


def test_unknown_family_preset():
  with pytest.raises(ValueError, match=r"preset: expected some of \['gpu', 'test', 'tpu', 'v1'\]"):
    load_config(os.path.join(ROOT, "experiments", "configs", "mobilenet_shapes.py:v3"))
