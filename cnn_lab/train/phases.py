"""Where a launch's wall time goes: start-up, data, model, compilation, training,
evaluation, checkpoints. The launcher logs one line of it at the end of a run."""

from __future__ import annotations

import contextlib
import os
import time


def process_seconds() -> float | None:
  """Seconds since this process started (Linux, 10 ms resolution), else None."""
  try:
    with open("/proc/self/stat") as f:
      start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])
    with open("/proc/uptime") as f:
      uptime = float(f.read().split()[0])
  except (OSError, ValueError, IndexError):
    return None
  return max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK"))


_START_UP_CLAIMED = False  # whether a run of this process has reported its start-up


class Phases:
  """Seconds per named phase, summed over its visits: `with phases("data"): ...`.

  The first run of a process counts from the process's start (its start-up: imports,
  flags, config, workdir); a later one (`experiments.degradation` trains four) from its
  own beginning, or the runs before it would be reported as its start-up."""

  def __init__(self):
    global _START_UP_CLAIMED
    self.seconds: dict[str, float] = {}
    self.started = None if _START_UP_CLAIMED else process_seconds()
    self.origin = 0.0 if self.started is not None else process_seconds()
    _START_UP_CLAIMED = True

  @contextlib.contextmanager
  def __call__(self, name: str):
    start = time.perf_counter()
    try:
      yield
    finally:
      self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start

  def summary(self) -> str:
    """`12.3 s since the process started: start-up 3.1 s, data 0.4 s, ...`."""
    parts = dict(self.seconds)
    if self.started is not None:
      parts = {"start-up": self.started, **parts}
    now = process_seconds()
    if now is None or self.origin is None:
      return ", ".join(f"{k} {v:.1f} s" for k, v in parts.items())
    total = now - self.origin
    parts["other"] = max(0.0, total - sum(parts.values()))
    named = ", ".join(f"{k} {v:.1f} s" for k, v in parts.items())
    since = "the process started" if self.started is not None else "this run began"
    return f"{total:.1f} s since {since}: {named}"
