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


class Phases:
  """Seconds per named phase, summed over its visits: `with phases("data"): ...`."""

  def __init__(self):
    self.seconds: dict[str, float] = {}
    self.started = process_seconds()  # the start-up: imports, flags, config, workdir

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
    total = process_seconds()
    if total is not None:
      parts["other"] = max(0.0, total - sum(parts.values()))
    named = ", ".join(f"{k} {v:.1f} s" for k, v in parts.items())
    return f"{total:.1f} s since the process started: {named}" if total is not None \
        else named
