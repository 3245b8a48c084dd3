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
import numpy as np
from absl import logging

from cnn_lab import paths


def read_metrics(path: str) -> list[dict]:
  """The records of a metrics.jsonl (none if it is missing). A damaged line (a write cut
  short, garbled bytes) is skipped with a warning naming it, never an error: the file is
  a log, the checkpoint is the run."""
  if not paths.exists(path):
    return []
  records, damaged = [], []
  lines = paths.read_bytes(path).decode("utf-8", "replace").splitlines()
  for number, line in enumerate(lines, 1):
    if not line.strip():
      continue
    try:
      record = json.loads(line)
    except ValueError:
      record = None
    if isinstance(record, dict) and isinstance(record.get("step"), int):
      records.append(record)
    else:
      damaged.append(number)
  if damaged:
    logging.warning("%s: skipped %d damaged line(s) (line %s); kept %d.", path,
                    len(damaged), ", ".join(map(str, damaged[:5])), len(records))
  return records


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
    # A resumed run recomputes the steps after its checkpoint: drop their old lines
    # (and any damaged one, which `read_metrics` names).
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


def summarise(pending: list[dict]) -> dict:
  """Means of the per-step host metrics since the last report; `nonfinite` is a count,
  `learning_rate` the last value."""
  out = {}
  for key in pending[0]:
    values = np.array([m[key] for m in pending], np.float64)
    if key == "nonfinite":
      out[key] = float(values.sum())
    elif key == "learning_rate":
      out[key] = float(values[-1])
    else:
      out[f"train/{key}"] = float(values.mean())
  return out


class PendingMetrics:
  """Per-step training metrics not yet logged: device scalars as the steps return them
  (no sync per step), fetched together when logged or saved with a checkpoint."""

  def __init__(self, items=()):
    self.items = list(items)

  def append(self, metrics: dict) -> None:
    """One step's scalars, or one dispatch's: each value stacked `[n]` over its steps."""
    self.items.append(metrics)

  def to_host(self) -> list[dict]:
    """The pending metrics as host floats, one dict a step (one device sync); they
    stay pending."""
    host = []
    for item in jax.device_get(self.items):
      columns = {name: np.atleast_1d(value) for name, value in item.items()}
      steps = len(next(iter(columns.values())))
      host += [{name: float(v[i]) for name, v in columns.items()} for i in range(steps)]
    self.items = host
    return self.items

  def take_summary(self) -> dict:
    """`summarise` of the (host) pending metrics without `nonfinite`; clears them."""
    if not self.items:
      return {}
    summary = summarise(self.items)
    summary.pop("nonfinite")
    self.items = []
    return summary
