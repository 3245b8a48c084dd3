"""Evaluation by per-batch sums over a whole split, every example counted exactly once."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import jax


def sum_batches(eval_step: Callable, state, batches: Iterable) -> dict:
  """Adds the per-batch sums `eval_step(state, batch)` over `batches`; host numpy."""
  totals = None
  for batch in batches:
    sums = eval_step(state, batch)
    totals = sums if totals is None else jax.tree.map(lambda a, b: a + b, totals, sums)
  return jax.device_get(totals)


def evaluate_classification(eval_step: Callable, state, batches: Iterable,
                            prefix: str = "eval/") -> Iterator[tuple[str, float]]:
  """Adds the per-batch sums of `eval_step(state, batch)` (count, loss, correct) over
  `batches` and yields `(prefix + "loss", mean)`, `(prefix + "accuracy", fraction)` and
  `(prefix + "count", examples)`."""
  totals = sum_batches(eval_step, state, batches)
  count = float(totals["count"])
  yield prefix + "loss", float(totals["loss"]) / max(count, 1.0)
  yield prefix + "accuracy", float(totals["correct"]) / max(count, 1.0)
  yield prefix + "count", count
