"""The measurement commands run and report what they claim (no timing assertions)."""

import functools
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnn_lab.benchmarks import data as data_suite
from cnn_lab.benchmarks import peers as peers_suite
from cnn_lab.benchmarks import train as train_suite
from cnn_lab.benchmarks.seeds import run_seed, summary
from cnn_lab.models import param_count
from cnn_lab.models.summary import summarize
from tests.helpers import CONFIG, ROOT


def test_train_suite_rows():
  rows = list(train_suite.suite(quick=True, peak_gflops=100.0))
  assert [(r["model"], r["steps_per_dispatch"]) for r in rows] == \
      [("lenet5_modern", 1), ("lenet5_modern", 4), ("resnet20_cifar", 1)]
  for r in rows:
    assert r["images_per_s"] > 0 and r["compile_s"] > 0 and r["memory_mb"] > 0
    assert r["mfu"] == pytest.approx(r["gflops"] / 100.0)
    assert 0 < r["call_ms"] and 0 < r["call_share"] < 1  # a call of no work: faster than steps
  # 6 FLOPs per MAC per image: ResNet-20 at 16x16 does a quarter of its 32x32 MACs
  flops = train_suite.train_flops_per_image("resnet20_cifar", 16, 3, 10)
  assert flops == 6 * summarize("resnet20_cifar", (16, 16, 3), 10)["macs"]


def test_peers_suite_times_keras_linen_and_ours():
  rows = list(peers_suite.suite(quick=True))
  frameworks = {r["framework"].split(" ")[0] for r in rows}
  assert frameworks == {"cnn_lab", "flax", "keras"}
  assert all(r["images_per_s"] > 0 for r in rows)


@pytest.mark.parametrize("model", ["lenet5_modern", "resnet20_cifar"])
def test_peer_models_match_ours_in_parameters(model):
  """Same architecture in every framework: the parameter counts agree."""
  channels = 3 if model.startswith("resnet") else 1
  ours = param_count(model, num_classes=10, in_channels=channels, input_size=32)
  net = peers_suite.keras_model(peers_suite._keras(), model, 32, channels, 10)
  assert sum(int(np.prod(w.shape)) for w in net.trainable_weights) == ours
  init = functools.partial(peers_suite.linen_model(model, 10).init, train=False)
  linen = jax.eval_shape(init, jax.random.key(0), jnp.zeros((1, 32, 32, channels)))
  assert sum(int(np.prod(p.shape)) for p in jax.tree.leaves(linen["params"])) == ours


def test_data_suite_compares_pipeline_and_step():
  rows = list(data_suite.suite(quick=True, configs=(CONFIG + ":test",)))
  assert rows[0]["pipeline_examples_per_s"] > 0 and rows[0]["step_examples_per_s"] > 0
  assert rows[0]["pipeline_over_step"] == pytest.approx(
      rows[0]["pipeline_examples_per_s"] / rows[0]["step_examples_per_s"])


def test_benchmark_command_prints_the_ops_table_and_writes_its_rows(tmp_path):
  """`experiments.benchmark ops --quick`: our convolutions against XLA's, box ops."""
  out = tmp_path / "bench.json"
  done = subprocess.run([sys.executable, "-m", "experiments.benchmark", "ops", "--quick",
                         f"--out={out}"], cwd=ROOT, capture_output=True, text=True,
                        timeout=300)
  assert done.returncode == 0, done.stderr[-2000:]
  assert "GFLOP/s" in done.stdout and "fwd_slowdown_vs_xla" in done.stdout
  rows = json.loads(out.read_text())["suites"]["ops"]
  conv_rows = [r for r in rows if r["impl"] in ("xla", "scratch")]
  assert {r["impl"] for r in conv_rows} == {"xla", "scratch"}
  assert all(r["fwd_gflops"] > 0 and r["fwd_bwd_gflops"] > 0 for r in conv_rows)
  boxes = {r["case"] for r in rows if r["impl"] == "jax"}
  assert boxes == {"iou 1000x1000 boxes", "nms 1000 boxes, keep <= 100"}
  assert all(r["fwd_ms"] > 0 for r in rows)  # an unknown suite: tests/test_cli.py


def test_seed_runner_reads_the_final_eval(tmp_path):
  row = run_seed(CONFIG + ":test", str(tmp_path / "s0"), 0, ["--config.num_train_steps=15"],
                 fresh=False)  # the session's digits and compilation cache
  assert row["eval/count"] == 360 and 0 <= row["eval/accuracy"] <= 1 and row["wall_s"] > 0
  assert summary([row, {**row, "seed": 1}])["eval/accuracy"] == row["eval/accuracy"]
  assert os.path.exists(tmp_path / "s0" / "checkpoints")
