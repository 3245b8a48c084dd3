"""The training spine end to end on the :test preset: determinism, resume, failure modes."""

import json
import logging
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnn_lab.train.loop import NonFiniteLossError, train_and_evaluate
from tests.helpers import ROOT, assert_trees_bitwise_equal, saved_state, small_config


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  """One uninterrupted 40-step run, the yardstick for the others."""
  workdir = str(tmp_path_factory.mktemp("reference"))
  result = train_and_evaluate(small_config(num_train_steps=40), workdir)
  return workdir, result


def read(path):
  with open(path) as f:
    return f.read()


def test_run_writes_its_outputs(reference):
  workdir, result = reference
  assert result["step"] == 40 and result["eval/count"] == 360  # every test image once
  for name in ("config.json", "metrics.jsonl", "curves.png"):
    assert os.path.exists(os.path.join(workdir, name)), name
  assert os.listdir(os.path.join(workdir, "tensorboard"))
  records = [json.loads(line) for line in read(os.path.join(workdir, "metrics.jsonl"))
             .splitlines()]
  assert all("step" in r for r in records)
  assert any("eval/accuracy" in r for r in records)
  assert any("train/loss" in r and "learning_rate" in r for r in records)
  assert json.loads(read(os.path.join(workdir, "config.json")))["model"]["name"] == \
      "lenet5_modern"


def test_same_seed_gives_identical_metrics_and_params(reference, tmp_path):
  workdir, _ = reference
  train_and_evaluate(small_config(num_train_steps=40), str(tmp_path))
  assert read(os.path.join(workdir, "metrics.jsonl")) == \
      read(os.path.join(tmp_path, "metrics.jsonl"))
  assert_trees_bitwise_equal(saved_state(workdir), saved_state(str(tmp_path)))


def test_other_seed_differs(reference, tmp_path):
  train_and_evaluate(small_config(num_train_steps=40, seed=1), str(tmp_path))
  assert read(os.path.join(reference[0], "metrics.jsonl")) != \
      read(os.path.join(tmp_path, "metrics.jsonl"))


def test_steps_per_dispatch_trains_bitwise_as_one_step_a_dispatch(reference, tmp_path):
  """5 steps a dispatch (the intervals are 5, 15 and 10): the same parameters and log
  as the reference's one step a dispatch; resumed from step 7 (between dispatches,
  saved by a run of one step a dispatch), it realigns and still ends the same."""
  from cnn_lab.train.experiment import build_experiment
  from cnn_lab.train.loop import Run
  workdir, _ = reference
  fives = small_config(num_train_steps=40, steps_per_dispatch=5)
  train_and_evaluate(fives, str(tmp_path / "fives"))
  assert read(os.path.join(workdir, "metrics.jsonl")) == \
      read(os.path.join(tmp_path / "fives", "metrics.jsonl"))
  assert_trees_bitwise_equal(saved_state(workdir), saved_state(str(tmp_path / "fives")))
  ones = small_config(num_train_steps=40)
  run = Run(ones, build_experiment(ones), str(tmp_path / "resumed"))
  for _ in range(7):
    run.train_step()
  run.save()
  run.close()
  assert train_and_evaluate(fives, str(tmp_path / "resumed"))["step"] == 40
  assert_trees_bitwise_equal(saved_state(workdir), saved_state(str(tmp_path / "resumed")))


def test_steps_per_dispatch_with_batchnorm_agrees_to_rounding():
  """ResNet-20's :test preset (BatchNorm, AdamW): 3 steps in one call against 3 calls of
  one step, same batches. Not bitwise (unlike LeNet-5 above): in one program XLA fuses
  consecutive steps' update chains (Adam's moments, BatchNorm's running statistics) and
  rounds them differently; equal to float32 rounding, step by step."""
  from cnn_lab.train import mesh as mesh_lib
  from cnn_lab.train.experiment import build_experiment
  from cnn_lab.train.launch import load_config
  exp = build_experiment(load_config(
      os.path.join(ROOT, "experiments", "configs", "resnet_shapes.py:test")))
  batches = [b for b, _ in zip(exp.train_iterator(), range(3))]

  def stacked(bs):
    return mesh_lib.global_batch(mesh_lib.stack_batches(bs), exp.mesh, stacked=True)

  def copy(state):
    return jax.tree.map(lambda x: x.copy(), state)

  ones, losses = copy(exp.state), []
  for b in batches:
    ones, metrics = exp.train_steps(ones, stacked([b]))
    losses.append(float(metrics["loss"][0]))
  threes, metrics = exp.train_steps(copy(exp.state), stacked(batches))
  np.testing.assert_allclose(np.asarray(metrics["loss"]), losses, rtol=1e-6)
  for a, b in zip(jax.tree.leaves((ones.params, ones.batch_stats, ones.opt_state)),
                  jax.tree.leaves((threes.params, threes.batch_stats, threes.opt_state))):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-7)


def test_steps_per_dispatch_must_divide_the_intervals():
  from cnn_lab.errors import InputError
  from cnn_lab.train.configs import validate
  for k in (0, -1):
    with pytest.raises(InputError, match="steps_per_dispatch: expected an integer >= 1"):
      validate(small_config(steps_per_dispatch=k))
  with pytest.raises(InputError, match=r"steps_per_dispatch: expected a divisor of "
                     r"log_every_steps=5, eval_every_steps=15, checkpoint_every_steps=10: "
                     r"one of \[1, 5\], received 3"):
    validate(small_config(steps_per_dispatch=3))


# A run killed mid-training (SIGKILL, or SIGTERM's clean stop) and relaunched ends
# bitwise where an uninterrupted one does: tests/test_scale.py, killed three times.


def test_unreadable_latest_checkpoint_falls_back_to_previous(reference, tmp_path, caplog):
  caplog.set_level(logging.INFO)
  workdir = str(tmp_path)
  train_and_evaluate(small_config(num_train_steps=40), workdir)
  latest = os.path.join(workdir, "checkpoints", "40", "state")
  for root, _, files in os.walk(latest):
    for name in files:
      with open(os.path.join(root, name), "wb") as f:
        f.write(b"garbage")
  result = train_and_evaluate(small_config(num_train_steps=40), workdir)
  assert "Checkpoint at step 40" in caplog.text and "unreadable" in caplog.text
  assert "Resumed from the checkpoint at step 30" in caplog.text
  assert os.path.isdir(os.path.join(workdir, "checkpoints", "40.unreadable"))  # kept aside
  assert result["step"] == 40
  assert_trees_bitwise_equal(saved_state(reference[0]), saved_state(workdir))


def test_nan_loss_stops_with_last_good_checkpoint_intact(tmp_path):
  # A learning rate that explodes at step 15, after the checkpoint at step 10.
  config = small_config(**{"optimizer.name": "sgd", "schedule.name": "piecewise",
                          "schedule.boundaries": (15,), "schedule.scales": (1e30,),
                          "optimizer.learning_rate": 0.01, "checkpoint_every_steps": 10,
                          "log_every_steps": 5})
  with pytest.raises(NonFiniteLossError, match="NaN or inf .* Last good checkpoint: step 10"):
    train_and_evaluate(config, str(tmp_path))
  state = saved_state(str(tmp_path))
  assert state["step"] == 10
  leaves = [np.asarray(v) for v in jax.tree.leaves(state["params"])]
  assert all(np.isfinite(v).all() for v in leaves)


def test_workdir_that_is_not_writable(tmp_path):
  blocker = tmp_path / "file"
  blocker.write_text("x")
  with pytest.raises(ValueError, match="workdir: expected a writable directory"):
    train_and_evaluate(small_config(), str(blocker / "run"))


def test_override_and_unknown_names_in_config(tmp_path):
  with pytest.raises(ValueError, match="dataset: expected one of .*'digits'"):
    train_and_evaluate(small_config(**{"dataset.name": "imagenet2077"}), str(tmp_path))
  with pytest.raises(ValueError, match="model.name: expected one of .*lenet5"):
    train_and_evaluate(small_config(**{"model.name": "lenet6"}), str(tmp_path))
  with pytest.raises(ValueError, match="optimizer.name: expected one of"):
    train_and_evaluate(small_config(**{"optimizer.name": "adagrad"}), str(tmp_path))


def test_batch_statistics_are_carried_in_the_train_state():
  """A BatchNorm model: the step updates running statistics, eval uses them."""
  import optax
  from flax import nnx

  from cnn_lab import nn as cnn_nn
  from cnn_lab.train.state import create_train_state
  from cnn_lab.train.steps import make_eval_step, make_train_step
  from cnn_lab.train.tasks.classification import Classification

  class Tiny(nnx.Module):
    def __init__(self, rngs):
      self.conv = cnn_nn.Conv(1, 4, 3, rngs=rngs)
      self.bn = cnn_nn.BatchNorm(4, momentum=0.5, rngs=rngs)
      self.out = cnn_nn.Dense(4, 3, rngs=rngs)

    def __call__(self, x, *, train=False, rngs=None):
      x = self.bn(self.conv(x), train=train)
      return self.out(x.mean(axis=(1, 2)))

  tx = optax.sgd(0.1)
  graphdef, state = create_train_state(Tiny(nnx.Rngs(0)), tx, jax.random.key(0))
  batch = {"image": jax.random.normal(jax.random.key(1), (8, 6, 6, 1)) * 3 + 2,
           "label": jnp.arange(8) % 3, "mask": jnp.ones(8, bool)}
  step = jax.jit(make_train_step(graphdef, tx, Classification()))
  new_state, metrics = step(state, batch)
  before = jax.tree.leaves(state.batch_stats)
  after = jax.tree.leaves(new_state.batch_stats)
  assert before and any(not np.allclose(a, b) for a, b in zip(before, after))
  assert int(new_state.step) == 1 and int(metrics["nonfinite"]) == 0
  sums = jax.jit(make_eval_step(graphdef, Classification()))(new_state, batch)
  assert float(sums["count"]) == 8
