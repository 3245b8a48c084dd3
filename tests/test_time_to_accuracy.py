"""The time-to-accuracy suite: its peers' runners, its clock and its table (no timing
assertions: the rows' arithmetic and what each runner prints)."""

import subprocess
import sys

import numpy as np
import pytest

from cnn_lab.benchmarks import time_to_accuracy as tta
from tests.helpers import ROOT


@pytest.fixture(scope="module")
def tiny_arrays(tmp_path_factory):
  """MNIST-shaped arrays, 256 training and 100 test images, in the runners' .npz."""
  rng = np.random.default_rng(0)
  path = tmp_path_factory.mktemp("tta") / "tiny.npz"
  np.savez(path, train_x=rng.integers(0, 256, (256, 28, 28, 1), np.uint8),
           train_y=rng.integers(0, 10, 256), test_x=rng.integers(0, 256, (100, 28, 28, 1),
                                                                 np.uint8),
           test_y=rng.integers(0, 10, 100))
  return str(path)


@pytest.mark.parametrize("framework", ["flax", "keras"])
def test_each_example_prints_its_evaluations_and_stops_at_max_steps(framework, tiny_arrays):
  done = subprocess.run([sys.executable, "-m", "cnn_lab.benchmarks.mnist_examples",
                         framework, "0", "2", "3", tiny_arrays], cwd=ROOT,
                        capture_output=True, text=True, timeout=300)
  assert done.returncode == 0, done.stderr[-2000:]
  evals = [line.split() for line in done.stdout.splitlines() if line.startswith("eval ")]
  assert [e[1] for e in evals] == ["2", "3"]  # every 2 steps, and at the end
  assert all(0 <= float(e[2]) <= 1 for e in evals)


def test_bad_runner_arguments_are_one_clear_error():
  done = subprocess.run([sys.executable, "-m", "cnn_lab.benchmarks.mnist_examples", "torch"],
                        cwd=ROOT, capture_output=True, text=True, timeout=120)
  assert done.returncode != 0
  assert "arguments: expected FRAMEWORK (flax|keras) SEED EVAL_EVERY MAX_STEPS ARRAYS" \
      in done.stderr


def _script(lines, code=0):
  body = "".join(f"print({line!r}, flush=True);" for line in lines)
  return [sys.executable, "-c", f"{body} import sys; sys.exit({code})"]


def test_run_timed_finds_the_first_evaluation_at_the_target():
  result = tta.run_timed(_script(["noise", "eval 100 0.9812", "eval 200 0.9903",
                                  "eval 300 0.9899", "eval 350 0.9921"]),
                         tta.EVAL_LINE["peer"])
  assert result["reached_step"] == 200 and result["final_accuracy"] == 0.9921
  assert result["evals"] == 4 and result["returncode"] == 0
  assert 0 < result["reached_s"] <= result["end_s"]
  assert 0 < result["peak_rss_mb"] < 1024  # the child's own, not the parent's at fork
  ours = tta.run_timed(_script(["I1201 loop.py:155] step 100  eval/loss=0.1  "
                                "eval/accuracy=0.9950  eval/count=10000.0000"]),
                       tta.EVAL_LINE["ours"])
  assert (ours["reached_step"], ours["final_accuracy"]) == (100, 0.995)
  never = tta.run_timed(_script(["eval 100 0.5"], code=3), tta.EVAL_LINE["peer"])
  assert never["reached_s"] is None and never["returncode"] == 3


def test_suite_rows_summary_and_a_peer_that_is_not_installed(monkeypatch, tmp_path):
  lines = {"flax": ["eval 100 0.985", "eval 200 0.991"], "keras": None,
           "ours": ["step 100  eval/accuracy=0.9920"]}
  monkeypatch.setattr(tta.datasets, "prepare", lambda name: None)
  monkeypatch.setattr(tta, "write_arrays", lambda folder: "unused.npz")
  monkeypatch.setattr(tta, "commands", lambda seed, arrays, workdir, quick, accel: {
      "flax (examples/mnist)": _script(lines["flax"]), "keras (mnist_convnet)": None,
      "cnn_lab (lenet5_mnist.py)": _script(lines["ours"])})
  rows = list(tta.suite(seeds=(0, 1)))
  runs, medians = rows[:6], rows[6:]
  assert [r["status"] for r in runs] == ["ok", "not installed (pip install -e '.[bench]')",
                                          "ok"] * 2
  assert [r["framework"] for r in medians] == ["flax (examples/mnist)",
                                               "keras (mnist_convnet)",
                                               "cnn_lab (lenet5_mnist.py)"]
  flax, keras, ours = medians
  assert keras["reached_s"] is None and keras["speedup_of_ours"] is None
  assert flax["final_accuracy"] == pytest.approx(0.991) and flax["final_sd"] == 0
  assert flax["speedup_of_ours"] == pytest.approx(flax["reached_s"] / ours["reached_s"])
  assert ours["speedup_of_ours"] == 1


def test_keras_missing_makes_its_command_none(monkeypatch):
  monkeypatch.setattr(tta, "keras_installed", lambda: False)
  argv = tta.commands(1, "a.npz", "/tmp/w", quick=True)
  assert argv["keras (mnist_convnet)"] is None
  ours = argv["cnn_lab (lenet5_mnist.py)"]
  assert "--config.seed=1" in ours and "--config.num_train_steps=20" in ours
  assert argv["flax (examples/mnist)"][-5:] == ["flax", "1", "10", "20", "a.npz"]
  on_gpu = tta.commands(1, "a.npz", "/tmp/w", quick=False, accelerator=True)
  assert "--config.eval_every_steps=25" in on_gpu["cnn_lab (lenet5_mnist.py)"]  # 512 a batch
