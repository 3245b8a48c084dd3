"""Honest timings: compile and warm-up excluded, the median of repeated runs."""

from __future__ import annotations

import os
import platform
import statistics
import time

import jax


def median_seconds(fn, *args, repeats: int = 7, warmup: int = 2) -> float:
  """Median wall time of `fn(*args)` (blocked until ready) over `repeats` runs."""
  for _ in range(warmup):
    jax.block_until_ready(fn(*args))
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def machine() -> dict:
  """What the numbers were measured on."""
  cpu = platform.processor() or platform.machine()
  try:
    with open("/proc/cpuinfo") as f:
      cpu = next((line.split(":", 1)[1].strip() for line in f
                  if line.startswith("model name")), cpu)
  except OSError:
    pass
  return {"cpu": cpu, "cores": os.cpu_count(), "backend": jax.default_backend(),
          "devices": [str(d) for d in jax.devices()], "device_kind": jax.devices()[0].device_kind,
          "jax": jax.__version__,
          "python": platform.python_version()}


def inference_report(fn, state, images, what: str) -> str:
  """Times `fn(state, images)` (compile excluded, median) -> a one-line images/s report."""
  seconds = median_seconds(fn, state, images)
  n, h, w = images.shape[:3]
  return (f"inference: {n} images of {h}x{w} in {1e3 * seconds:.1f} ms ({what}, jitted): "
          f"{n / seconds:.0f} images/s on {jax.device_count()} {jax.default_backend()} "
          "device(s)")
