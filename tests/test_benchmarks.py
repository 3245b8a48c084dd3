"""The measurement commands run and report what they claim (no timing assertions)."""

import json
import os
import subprocess
import sys

from cnn_lab.benchmarks import ops as ops_suite
from cnn_lab.benchmarks.report import format_table
from cnn_lab.benchmarks.seeds import run_seed, summary
from tests.helpers import CONFIG, ROOT


def test_ops_suite_rows():
  rows = list(ops_suite.suite(quick=True))
  conv_rows = [r for r in rows if r["impl"] in ("xla", "scratch")]
  assert {r["impl"] for r in conv_rows} == {"xla", "scratch"}
  assert all(r["fwd_gflops"] > 0 and r["fwd_bwd_gflops"] > 0 for r in conv_rows)
  assert "fwd_slowdown_vs_xla" in format_table(rows)
  boxes = {r["case"] for r in rows if r["impl"] == "jax"}
  assert boxes == {"iou 1000x1000 boxes", "nms 1000 boxes, keep <= 100"}
  assert all(r["fwd_ms"] > 0 for r in rows)


def test_benchmark_command_prints_table_and_writes_json(tmp_path):
  out = tmp_path / "bench.json"
  done = subprocess.run([sys.executable, "-m", "experiments.benchmark", "ops", "--quick",
                         f"--out={out}"], cwd=ROOT, capture_output=True, text=True,
                        timeout=300)
  assert done.returncode == 0, done.stderr[-2000:]
  assert "scratch" in done.stdout and "GFLOP/s" in done.stdout
  assert json.loads(out.read_text())["suites"]["ops"]
  bad = subprocess.run([sys.executable, "-m", "experiments.benchmark", "opz"], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
  assert bad.returncode != 0 and "suite: expected some of ['ops']" in bad.stderr


def test_seed_runner_reads_the_final_eval(tmp_path):
  row = run_seed(CONFIG + ":test", str(tmp_path / "s0"), 0, ["--config.num_train_steps=15"])
  assert row["eval/count"] == 360 and 0 <= row["eval/accuracy"] <= 1 and row["wall_s"] > 0
  assert summary([row, {**row, "seed": 1}])["eval/accuracy"] == row["eval/accuracy"]
  assert os.path.exists(tmp_path / "s0" / "checkpoints")
