"""Diagnostics: per-layer output statistics and per-parameter gradient norms."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import optax

from cnn_lab.train.diagnose import layer_statistics
from cnn_lab.train.experiment import build_experiment
from cnn_lab.train.launch import load_config
from cnn_lab.train.steps import step_keys, training_loss
from tests.helpers import CONFIG, ROOT


def test_layer_statistics_are_the_training_passs():
  """ResNet-20 at initialisation, train mode: every BatchNorm output is normalised over
  the batch (mean 0, std 1 up to epsilon), the layers come in call order with their
  module paths, and the gradient norms are those of the training loss's gradient."""
  config = load_config(os.path.join(ROOT, "experiments", "configs", "resnet_shapes.py:test"))
  exp = build_experiment(config)
  batch = next(exp.train_iterator())
  loss, layers, params = layer_statistics(exp.graphdef, exp.state, batch, exp.task)
  norms = [s for s in layers if s.kind == "batch_norm"]
  assert len(norms) == 19 and layers[0].kind == "conv" and layers[-1].kind == "dense"
  for s in norms:
    assert abs(s.mean) < 1e-4 and abs(s.std - 1) < 1e-3, s
  assert layers[-1].shape == (8,) and "?" not in {s.name for s in layers}  # module paths
  keys = step_keys(exp.state.key(), 0)
  grads = jax.jit(jax.grad(lambda p: training_loss(
      exp.graphdef, exp.task, p, exp.state.batch_stats,
      exp.task.augment(batch, keys["augment"]), keys)[0]))(exp.state.params)
  assert len(params) == len(jax.tree.leaves(grads))
  np.testing.assert_allclose(np.sqrt(sum(p.grad_norm ** 2 for p in params)),
                             optax.tree.norm(grads), rtol=1e-5)
  assert np.isfinite(loss) and all(p.norm >= 0 and np.isfinite(p.ratio) or p.norm == 0
                                   for p in params)


def test_diagnose_command_trains_first_prints_and_writes_json(tmp_path):
  out = subprocess.run([sys.executable, "-m", "experiments.diagnose",
                        f"--config={CONFIG}:test", "--steps=2",
                        f"--out={tmp_path / 'd.json'}"],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-2000:]
  assert "after 2 steps: training loss" in out.stdout and "|g|/|w|" in out.stdout
  assert "output std: first layer" in out.stdout
  report = json.loads((tmp_path / "d.json").read_text())
  assert report["steps"] == 2 and report["layers"][0]["kind"] == "conv"
  assert {"name", "shape", "norm", "grad_norm", "ratio"} <= set(report["params"][0])
  bad = subprocess.run([sys.executable, "-m", "experiments.diagnose",
                        f"--config={CONFIG}:test", "--steps=-1"],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert bad.returncode != 0 and "--steps: expected 0 or more training steps" in bad.stderr
