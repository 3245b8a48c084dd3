"""How Adam moves each group of kernels, step by step: is a slow start noise or stale moments?

The gradient Adam saw at a step (after any clipping) is recovered exactly from the
first moments before and after it, g = (m' - b1 m) / (1 - b1), so the trace needs only
the states the training loop makes, not a second train step. Per group of kernels (ndim
>= 2) and step:

  grad_norm      |g| of the gradient Adam saw
  cosine         cos(g, the previous step's g): near 0 when the batch noise dominates
                 (0 at the first step; clipping scales g, so it does not change this)
  step_size      mean |m_hat| / (sqrt(v_hat) + eps): the step per coordinate in units
                 of the learning rate; about 0.23 for white noise with b1 = 0.9
  fresh_over_v   mean g^2 / mean v_hat: well below 1 when v_hat still holds larger,
                 older gradients (stale second moments slow the step down)

`experiments.diagnose --steps=N --trace` prints them as means over windows of steps.
"""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import optax

from cnn_lab.errors import fail
from cnn_lab.train.optim import first_match, path_name

STATISTICS = ("grad_norm", "cosine", "step_size", "fresh_over_v")
EPS = 1e-8  # optax.adam's eps, added to sqrt(v_hat)


def adam_moments(opt_state) -> optax.ScaleByAdamState:
  """The one Adam state (count, mu, nu) in an optimizer state (e.g. clipping + AdamW)."""
  is_adam = lambda x: isinstance(x, optax.ScaleByAdamState)
  found = [s for s in jax.tree.leaves(opt_state, is_leaf=is_adam) if is_adam(s)]
  if len(found) != 1:
    raise fail("optimizer", "adam or adamw without param_groups (one Adam state to trace)",
               f"{len(found)} Adam states")
  return found[0]


def kernel_groups(params, patterns: dict[str, str]) -> dict[str, list[int]]:
  """Leaf indices (in `jax.tree.leaves(params)` order) of the kernels (ndim >= 2) of each
  group: the first of `patterns` (name -> regex on "stem.conv.kernel"-style names) that
  matches; with no patterns, one group per top-level module. Unmatched kernels are left
  out; a pattern that matches no kernel is refused."""
  groups: dict[str, list[int]] = {name: [] for name in patterns}
  compiled = [(re.compile(p), name) for name, p in patterns.items()]
  leaves = jax.tree_util.tree_flatten_with_path(params)[0]
  for i, (path, leaf) in enumerate(leaves):
    if jnp.ndim(leaf) < 2:
      continue
    name = path_name(path)
    group = first_match(name, compiled, None if patterns else name.split(".")[0])
    if group is not None:
      groups.setdefault(group, []).append(i)
  empty = [name for name, members in groups.items() if not members]
  if empty:
    raise fail("trace_groups", "patterns that each match a kernel's name, e.g. "
               f"{path_name(leaves[0][0])!r}", ",".join(f"{n}={patterns[n]}" for n in empty))
  return groups


def step_statistics(before: optax.ScaleByAdamState, after: optax.ScaleByAdamState,
                    previous: list, groups: dict[str, list[int]], b1: float, b2: float):
  """-> ({f"{group}/{statistic}": scalar}, the step's gradients as a leaf list) from Adam's
  state `before` and `after` one step and the step before's gradients `previous`."""
  mu0, mu1 = jax.tree.leaves(before.mu), jax.tree.leaves(after.mu)
  nu1 = jax.tree.leaves(after.nu)
  t = after.count.astype(jnp.float32)
  grads = [(m1 - b1 * m0) / (1 - b1) for m0, m1 in zip(mu0, mu1)]
  out = {}
  for name, members in groups.items():
    g, p = [grads[i] for i in members], [previous[i] for i in members]
    m_hat = [mu1[i] / (1 - b1 ** t) for i in members]
    v_hat = [nu1[i] / (1 - b2 ** t) for i in members]
    g2, p2 = sum(jnp.sum(x * x) for x in g), sum(jnp.sum(x * x) for x in p)
    size = sum(x.size for x in g)
    out[f"{name}/grad_norm"] = jnp.sqrt(g2)
    out[f"{name}/cosine"] = sum(jnp.sum(x * y) for x, y in zip(g, p)) / jnp.sqrt(
        g2 * p2 + 1e-30)
    out[f"{name}/step_size"] = sum(jnp.sum(jnp.abs(m) / (jnp.sqrt(v) + EPS))
                                   for m, v in zip(m_hat, v_hat)) / size
    out[f"{name}/fresh_over_v"] = g2 / (sum(jnp.sum(v) for v in v_hat) + 1e-30)
  return out, grads


def window_means(records: list[dict], every: int) -> list[dict]:
  """Per-step records (with "step", the step count after it) -> their means over windows
  of `every` steps, each labelled with its last step."""
  rows = []
  for start in range(0, len(records), every):
    window = records[start:start + every]
    row = {k: float(np.mean([r[k] for r in window])) for k in window[0] if k != "step"}
    rows.append({"step": window[-1]["step"], **row})
  return rows


def format_trace(rows: list[dict], groups: list[str]) -> str:
  """One line per window and group: step, group, loss, then the four statistics."""
  lines = [f"{'step':>6} {'group':<12} {'loss':>7} " + " ".join(f"{s:>12}" for s in STATISTICS)]
  for row in rows:
    for group in groups:
      lines.append(f"{row['step']:6d} {group[:12]:<12} {row.get('loss', float('nan')):7.4f} "
                   + " ".join(f"{row[f'{group}/{s}']:12.3g}" for s in STATISTICS))
  return "\n".join(lines)
