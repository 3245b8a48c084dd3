"""Run outputs: config.json, metrics.jsonl, TensorBoard events, a progress bar or log lines.

metrics.jsonl holds one JSON object per line: `step` and metric names (`train/...`,
`eval/...`, `learning_rate`). It holds no wall-clock values, so two runs with the
same seed write identical files; throughput goes to the log and TensorBoard.
"""

from __future__ import annotations

import json
import sys
import time

import jax
from absl import logging

from cnn_lab import paths


def read_metrics(path: str) -> list[dict]:
  if not paths.exists(path):
    return []
  return [json.loads(line) for line in paths.read_text(path).splitlines() if line.strip()]


class MetricsWriter:
  """Adds to `workdir/metrics.jsonl` and TensorBoard; only process 0 writes.

  The file is rewritten whole (atomically) on each write, which buckets allow and
  appends they do not; it stays small (one line per logged step).
  """

  def __init__(self, workdir: str, *, resume_step: int = 0):
    self.path = paths.join(workdir, "metrics.jsonl")
    self.active = jax.process_index() == 0
    self.tb = None
    if not self.active:
      return
    # A resumed run recomputes the steps after its checkpoint: drop their old lines.
    self.lines = [json.dumps(r) + "\n" for r in read_metrics(self.path)
                  if r["step"] <= resume_step]
    paths.write_atomic(self.path, "".join(self.lines))
    from tensorboardX import SummaryWriter
    self.tb = SummaryWriter(paths.join(workdir, "tensorboard"), purge_step=resume_step + 1)

  def write(self, step: int, metrics: dict, *, to_jsonl: bool = True) -> None:
    if not self.active:
      return
    metrics = {k: float(v) for k, v in metrics.items()}
    if to_jsonl:
      self.lines.append(json.dumps({"step": int(step), **metrics}) + "\n")
      paths.write_atomic(self.path, "".join(self.lines))
    for k, v in metrics.items():
      self.tb.add_scalar(k, v, step)

  def close(self) -> None:
    if self.tb is not None:
      self.tb.close()


class Progress:
  """A tqdm bar on a terminal (steps/s, ETA, loss); absl log lines otherwise."""

  def __init__(self, total: int, initial: int, log_every: int):
    self.total, self.log_every = total, log_every
    self.bar = None
    if sys.stderr.isatty() and jax.process_index() == 0:
      from tqdm import tqdm
      self.bar = tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True)
    self.last_step, self.last_time = initial, time.perf_counter()

  def update(self, step: int, metrics: dict) -> float:
    """Reports progress at `step`; returns steps/s since the previous report."""
    now = time.perf_counter()
    rate = (step - self.last_step) / max(now - self.last_time, 1e-9)
    self.last_step, self.last_time = step, now
    shown = {k.split("/")[-1]: f"{v:.4g}" for k, v in metrics.items()
             if k.startswith(("train/loss", "train/accuracy", "eval/accuracy"))}
    if self.bar is not None:
      self.bar.set_postfix(shown, refresh=False)
      self.bar.update(step - self.bar.n)
    else:
      eta = (self.total - step) / max(rate, 1e-9)
      logging.info("step %d/%d  %s  %.1f steps/s  ETA %.0fs", step, self.total,
                   "  ".join(f"{k}={v}" for k, v in shown.items()), rate, eta)
    return rate

  def close(self) -> None:
    if self.bar is not None:
      self.bar.close()
