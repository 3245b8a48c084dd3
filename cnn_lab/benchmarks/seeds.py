"""Runs the launcher once per seed, each in a fresh process with a fresh data dir and an
empty compilation cache, so the wall time includes everything a user waits for on a
first launch: imports, data build, compilation, training (or, `fresh=False`, with this
process's data dir and cache: a warm launch's time)."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from cnn_lab.errors import fail
from cnn_lab.train.metrics import read_metrics


def parse_seeds(values: list[str]) -> list[int]:
  """A `--seeds` list flag as integers, checked before anything trains (a bad entry
  found only when its turn came would end a sweep after hours of the seeds before it)."""
  try:
    return [int(v) for v in values]
  except ValueError:
    raise fail("seeds", "comma-separated integers, e.g. 0,1,2", ",".join(values)) from None


def run_seed(config: str, workdir: str, seed: int, extra_flags: list[str],
             fresh: bool = True) -> dict:
  """One launch (`fresh`: with an empty data dir and compilation cache of its own);
  returns the final eval metrics and the wall seconds."""
  with tempfile.TemporaryDirectory() as data_dir:
    env = dict(os.environ)
    if fresh:
      env.update(CNN_LAB_DATA_DIR=data_dir,
                 CNN_LAB_COMPILATION_CACHE=os.path.join(data_dir, "xla"))
      env.pop("JAX_COMPILATION_CACHE_DIR", None)  # e.g. the test suite's shared one
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "experiments.train", f"--config={config}",
                           f"--workdir={workdir}", f"--config.seed={seed}", *extra_flags],
                          env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
  if done.returncode:
    raise RuntimeError(f"seed {seed} failed:\n{done.stderr[-3000:]}")
  final = {}
  for record in read_metrics(os.path.join(workdir, "metrics.jsonl")):
    final.update({k: v for k, v in record.items() if k.startswith("eval/")})
  return {"seed": seed, "wall_s": wall, **final}


def cached_run(config: str, workdir: str, fresh: bool = True) -> dict:
  """`run_seed(config, workdir, 0, [], fresh)` unless `workdir` already holds its result
  (`run.json`, written at the end), so a comparison can be re-drawn without
  retraining; delete the workdir to measure again."""
  record = os.path.join(workdir, "run.json")
  if os.path.exists(record):
    with open(record) as f:
      return json.load(f)
  result = run_seed(config, workdir, 0, [], fresh)
  with open(record, "w") as f:
    json.dump(result, f)
  return result


def mean_and_sd(values) -> tuple[float, float]:
  """Mean and sample standard deviation (0 for one value) of what the seeds gave."""
  values = list(values)
  return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def summary(rows: list[dict], key: str = "eval/accuracy") -> dict:
  """The mean row: mean, sample standard deviation, min and max of `key`; mean and max
  wall time."""
  values = [r[key] for r in rows]
  mean, sd = mean_and_sd(values)
  return {"seed": "mean", key: mean, "std_" + key: sd,
          "wall_s": statistics.mean(r["wall_s"] for r in rows),
          "min_" + key: min(values), "max_" + key: max(values),
          "max_wall_s": max(r["wall_s"] for r in rows)}
