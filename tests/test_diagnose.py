"""Diagnostics: per-layer output statistics and per-parameter gradient norms."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import optax
import pytest

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
                        f"--config={CONFIG}:test", "--steps=2", "--trace", "--trace_every=1",
                        f"--out={tmp_path / 'd.json'}"],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-2000:]
  assert "after 2 steps: training loss" in out.stdout and "|g|/|w|" in out.stdout
  assert "output std: first layer" in out.stdout
  report = json.loads((tmp_path / "d.json").read_text())
  assert report["steps"] == 2 and report["layers"][0]["kind"] == "conv"
  assert {"name", "shape", "norm", "grad_norm", "ratio"} <= set(report["params"][0])
  assert "fresh_over_v" in out.stdout and [r["step"] for r in report["trace"]] == [1, 2]
  assert "c1/step_size" in report["trace"][0]  # a group per top-level module: LeNet's c1
  assert "Adam's trace, steps 1-1:" in out.stderr and "steps 2-2:" in out.stderr  # as it goes
  bad = subprocess.run([sys.executable, "-m", "experiments.diagnose",
                        f"--config={CONFIG}:test", "--steps=-1"],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert bad.returncode != 0 and "--steps: expected 0 or more training steps" in bad.stderr


def test_adam_trace_recovers_the_gradient_adam_saw_and_its_statistics():
  """Two steps of clipping + AdamW on a toy tree: the gradient recovered from the first
  moments is the clipped gradient; cosine, step size and fresh/v are their definitions."""
  from cnn_lab.train.adam_trace import adam_moments, kernel_groups, step_statistics
  params = {"stem": {"kernel": np.ones((2, 3), np.float32)},
            "fc": {"kernel": np.ones((3, 2), np.float32), "bias": np.zeros(2, np.float32)}}
  tx = optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(1e-3, b1=0.9, b2=0.99))
  groups = kernel_groups(params, {})
  assert set(groups) == {"stem", "fc"} and all(len(v) == 1 for v in groups.values())
  rng = np.random.default_rng(0)
  state, previous, clipped_before = tx.init(params), None, None
  for step in range(2):
    grads = jax.tree.map(lambda p: rng.normal(size=p.shape).astype(np.float32) * 3, params)
    clipped = jax.tree.map(lambda g: g / optax.tree.norm(grads), grads)  # norm > 1: clipped
    before = adam_moments(state)
    _, state = tx.update(grads, state, params)
    previous = previous or [np.zeros_like(x) for x in jax.tree.leaves(params)]
    stats, previous = step_statistics(before, adam_moments(state), previous, groups, 0.9,
                                      0.99)
    g = np.asarray(clipped["stem"]["kernel"])
    np.testing.assert_allclose(stats["stem/grad_norm"], np.linalg.norm(g), rtol=1e-5)
    adam, t = adam_moments(state), step + 1
    m_hat = adam.mu["stem"]["kernel"] / (1 - 0.9 ** t)
    v_hat = adam.nu["stem"]["kernel"] / (1 - 0.99 ** t)
    np.testing.assert_allclose(stats["stem/step_size"],
                               np.mean(np.abs(m_hat) / (np.sqrt(v_hat) + 1e-8)), rtol=1e-5)
    np.testing.assert_allclose(stats["stem/fresh_over_v"], np.sum(g * g) / np.sum(v_hat),
                               rtol=1e-5)
    if clipped_before is not None:
      cos = np.sum(g * clipped_before) / np.linalg.norm(g) / np.linalg.norm(clipped_before)
      np.testing.assert_allclose(stats["stem/cosine"], cos, rtol=1e-4)
    clipped_before = g


def test_adam_trace_groups_refuse_a_pattern_that_matches_no_kernel():
  from cnn_lab.errors import InputError
  from cnn_lab.train.adam_trace import kernel_groups
  params = {"stem": {"kernel": np.ones((2, 3))}, "fc": {"kernel": np.ones((3, 2))}}
  assert kernel_groups(params, {"all": "kernel"}) == {"all": [0, 1]}
  with pytest.raises(InputError,
                     match=r"trace_groups: expected patterns.*received 'x=\^blocks'"):
    kernel_groups(params, {"stem": "^stem", "x": "^blocks"})
