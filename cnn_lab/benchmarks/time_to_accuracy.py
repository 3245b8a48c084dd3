"""Time to a good MNIST model, end to end: Flax's and Keras's MNIST examples beside ours.

Each run is a fresh process (`mnist_examples` for the peers, `experiments.train` for
ours) started one after the other, seed by seed, the frameworks taking turns so that a
busy spell of the machine is spread over all of them. All read the same arrays: the
real MNIST (`cnn_lab.data.mnist`), prepared before any clock starts (ours as its TFDS
dataset, the peers as an .npz of the same pixels). Every run evaluates on the 10,000
test images every `EVAL_EVERY` training steps of 128 images and at its end, and the
suite timestamps each evaluation as its line arrives, so evaluation counts as
training time. Every run compiles from scratch (ours gets an empty compilation cache
each time; the launcher's cache would otherwise serve seeds 1 and 2). Per run: seconds
from process start to the first evaluation at or above `TARGET`, seconds to the
process's end, the final test accuracy, and the peak resident memory of the process
(`VmHWM`).
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import jax
import numpy as np

from cnn_lab.benchmarks.peers import keras_installed
from cnn_lab.data import datasets
from cnn_lab.data.mnist import pickle_path, read_pickle
from cnn_lab.train.launch import load_config

TARGET = 0.99
EVAL_EVERY = 100  # training steps of the examples' batch: 12,800 images
PEER_BATCH = 128  # both examples' batch size, and our recommended config's on CPU
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIGS = os.path.join(ROOT, "experiments", "configs")
OURS = "lenet5_mnist.py"  # the config we recommend for MNIST
EVAL_LINE = {"ours": re.compile(r"step (\d+)  .*eval/accuracy=([0-9.]+)"),
             "peer": re.compile(r"^eval (\d+) ([0-9.]+)$")}


def write_arrays(folder: str) -> str:
  """The real MNIST as one .npz for the peers; the same pixels ours reads."""
  arrays = read_pickle(pickle_path(os.path.join(datasets.data_dir_or_default(None),
                                                "downloads")))
  path = os.path.join(folder, "mnist.npz")
  np.savez(path, train_x=arrays["train"][0], train_y=arrays["train"][1],
           test_x=arrays["test"][0], test_y=arrays["test"][1])
  return path


def commands(seed: int, arrays: str, workdir: str, quick: bool,
             accelerator: bool = False) -> dict:
  """{framework: argv} for one seed (a framework that is not installed: None). On an
  accelerator ours runs its `:gpu` preset, evaluated as many images apart as the
  examples' batches of `PEER_BATCH` (every 25 steps of 512 for every 100 of 128)."""
  every, max_steps = (10, 20) if quick else (EVAL_EVERY, 0)
  peer = lambda name: [sys.executable, "-m", "cnn_lab.benchmarks.mnist_examples", name,
                       str(seed), str(every), str(max_steps), arrays]
  config = f"{CONFIGS}/{OURS}" + (":gpu" if accelerator else "")
  ours_every = max(1, every * PEER_BATCH // load_config(config).batch_size)
  ours = [sys.executable, "-m", "experiments.train", f"--config={config}",
          f"--workdir={workdir}/ours_{seed}", f"--config.seed={seed}",
          f"--config.eval_every_steps={ours_every}", f"--config.log_every_steps={ours_every}"]
  if quick:
    ours.append(f"--config.num_train_steps={max_steps}")
  return {"flax (examples/mnist)": peer("flax"),
          "keras (mnist_convnet)": peer("keras") if keras_installed() else None,
          f"cnn_lab ({OURS})": ours}


class _PeakMemory:
  """The peak resident memory of process `pid` (`VmHWM`), read every 50 ms until
  `stop()`. Not `ru_maxrss`: Linux counts in it the parent's memory that a forked child
  held before `exec`."""

  def __init__(self, pid: int, argv: list[str]):
    self.pid, self.mb, self._done = pid, 0.0, threading.Event()
    self._cmdline = "\0".join(argv) + "\0"  # until exec, the child is the parent's copy
    self._thread = threading.Thread(target=self._poll, daemon=True)
    self._thread.start()

  def _poll(self) -> None:
    while not self._done.is_set():
      try:
        with open(f"/proc/{self.pid}/cmdline") as f:
          started = f.read() == self._cmdline
        with open(f"/proc/{self.pid}/status") as f:
          kib = next((int(line.split()[1]) for line in f if line.startswith("VmHWM:")), 0)
        if started:
          self.mb = max(self.mb, kib / 1024)
      except (OSError, ValueError):  # ended, or not Linux
        pass
      self._done.wait(0.05)

  def stop(self) -> None:
    self._done.set()
    self._thread.join()


def run_timed(argv: list[str], pattern: re.Pattern, target: float = TARGET,
              extra_env: dict | None = None) -> dict:
  """Runs `argv` (with `extra_env`), timestamping each evaluation line as it arrives.

  -> {"reached_s", "reached_step" (None when never at `target`), "end_s",
  "final_accuracy", "evals", "peak_rss_mb", "returncode", "tail" (the last lines)}."""
  env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
  env["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"  # a GPU is shared with this process
  env.update(extra_env or {})
  start = time.perf_counter()
  proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          env=env, cwd=ROOT)
  peak = _PeakMemory(proc.pid, argv)
  evals, tail = [], []
  for line in proc.stdout:
    seconds = time.perf_counter() - start
    tail = (tail + [line.rstrip()])[-5:]
    match = pattern.search(line.strip())
    if match:
      evals.append((seconds, int(match.group(1)), float(match.group(2))))
  proc.wait()
  end = time.perf_counter() - start
  peak.stop()
  reached = next((e for e in evals if e[2] >= target), None)
  return {"reached_s": reached and reached[0], "reached_step": reached and reached[1],
          "end_s": end, "final_accuracy": evals[-1][2] if evals else None,
          "evals": len(evals), "peak_rss_mb": peak.mb,
          "returncode": proc.returncode, "tail": tail}


def summary(rows: list[dict]) -> list[dict]:
  """One row per framework: medians over seeds, and the faster peer's median time to
  `TARGET` over each framework's (ours: > 1 is faster)."""
  out = []
  for name in dict.fromkeys(r["framework"] for r in rows):
    runs = [r for r in rows if r["framework"] == name and r.get("end_s") is not None]
    reached = [r["reached_s"] for r in runs if r["reached_s"] is not None]
    finals = [r["final_accuracy"] for r in runs if r["final_accuracy"] is not None]
    out.append({"suite": "time_to_accuracy", "framework": name, "seed": "median",
                "reached_s": statistics.median(reached) if len(reached) == len(runs) and runs
                else None,
                "end_s": statistics.median(r["end_s"] for r in runs) if runs else None,
                "final_accuracy": statistics.mean(finals) if finals else None,
                "final_sd": statistics.stdev(finals) if len(finals) > 1 else None,
                "peak_rss_mb": statistics.median(r["peak_rss_mb"] for r in runs)
                if runs else None})
  ours = next((r["reached_s"] for r in out if r["framework"].startswith("cnn_lab")), None)
  for row in out:
    row["speedup_of_ours"] = row["reached_s"] / ours if ours and row["reached_s"] else None
  return out


def suite(quick: bool = False, seeds: tuple = (0, 1, 2)):
  """Yields one row per (seed, framework), then one summary row per framework."""
  datasets.prepare("mnist")  # before any clock starts, for every contender
  accelerator = jax.default_backend() != "cpu"
  rows = []
  with tempfile.TemporaryDirectory(prefix="time_to_accuracy_") as folder:
    arrays = write_arrays(folder)
    for seed in seeds[:1] if quick else seeds:
      for name, argv in commands(seed, arrays, folder, quick, accelerator).items():
        row = {"suite": "time_to_accuracy", "framework": name, "seed": seed}
        if argv is None:
          row["status"] = "not installed (pip install -e '.[bench]')"
        else:
          kind = "ours" if name.startswith("cnn_lab") else "peer"
          # every run compiles from scratch, ours too: an empty compilation cache each
          cold = {"CNN_LAB_COMPILATION_CACHE": os.path.join(folder, f"xla_{seed}")}
          result = run_timed(argv, EVAL_LINE[kind], extra_env=cold)
          tail = result.pop("tail")
          row.update(result, status="ok" if result["returncode"] == 0 and result["evals"]
                     else "failed: " + " | ".join(tail))
        rows.append(row)
        yield row
  yield from summary(rows)
