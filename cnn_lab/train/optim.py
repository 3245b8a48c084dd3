"""Optimizers and learning-rate schedules from the config."""

from __future__ import annotations

import re

import jax
import ml_collections
import optax

from cnn_lab.errors import fail

OPTIMIZERS = ("sgd", "momentum", "adam", "adamw")
SCHEDULES = ("constant", "cosine", "warmup_cosine", "piecewise")


def make_schedule(cfg: ml_collections.ConfigDict, total_steps: int) -> optax.Schedule:
  """`cfg` = config.schedule; the peak learning rate is config.optimizer.learning_rate.

  constant; cosine (to `end_factor` x peak); warmup_cosine (linear from 0 over
  `warmup_steps`, then cosine); piecewise (x `scales[i]` after `boundaries[i]`,
  given as fractions of training when < 1, else steps).
  """
  name, lr, peak_lr = cfg.name, None, cfg.learning_rate
  end = peak_lr * cfg.get("end_factor", 0.0)
  warmup = int(cfg.get("warmup_steps", 0))
  if name == "constant":
    lr = optax.constant_schedule(peak_lr)
  elif name == "cosine":
    lr = optax.cosine_decay_schedule(peak_lr, total_steps, alpha=cfg.get("end_factor", 0.0))
  elif name == "warmup_cosine":
    lr = optax.warmup_cosine_decay_schedule(0.0, peak_lr, warmup, max(total_steps, warmup + 1),
                                            end)
  elif name == "piecewise":
    bounds = [int(b * total_steps) if b < 1 else int(b) for b in cfg.get("boundaries", ())]
    lr = optax.piecewise_constant_schedule(
        peak_lr, dict(zip(bounds, cfg.get("scales", ()))))
  else:
    raise fail("schedule.name", f"one of {SCHEDULES}", name)
  return lr


def path_name(path) -> str:
  """A pytree path -> "base.blocks.3.conv.kernel" (the names `param_groups` match)."""
  parts = []
  for entry in path:
    for attr in ("key", "name", "idx"):
      if hasattr(entry, attr):
        parts.append(str(getattr(entry, attr)))
        break
  return ".".join(p for p in parts if p != "value")


def first_match(name: str, patterns, default=None):
  """The label of the first (compiled regex, label) of `patterns` that `name` (a
  `path_name`) matches anywhere; `default` if none does. `param_groups` and the Adam
  trace's groups both label parameters this way."""
  return next((label for pattern, label in patterns if pattern.search(name)), default)


def _base_transform(opt, lr) -> optax.GradientTransformation:
  name = opt.name
  if name == "sgd":
    tx = optax.sgd(lr)
  elif name == "momentum":
    tx = optax.sgd(lr, momentum=opt.get("momentum", 0.9), nesterov=opt.get("nesterov", False))
  elif name == "adam":
    tx = optax.adam(lr, b1=opt.get("b1", 0.9), b2=opt.get("b2", 0.999))
  elif name == "adamw":
    tx = optax.adamw(lr, b1=opt.get("b1", 0.9), b2=opt.get("b2", 0.999),
                     weight_decay=opt.get("weight_decay", 1e-4))
  else:
    raise fail("optimizer.name", f"one of {OPTIMIZERS}", name)
  wd = opt.get("weight_decay", 0.0)
  if name in ("sgd", "momentum") and wd:
    tx = optax.chain(optax.add_decayed_weights(wd), tx)  # L2 as in the classic recipes
  return tx


def _grouped(opt, lr, groups, total_steps: int) -> optax.GradientTransformation:
  """`groups`: ((regex, lr_multiplier, start), ...), first match wins; `start` (a fraction
  of training when < 1, else a step) is when the group begins to move; multiplier 0
  freezes a group entirely (no update, no weight decay)."""
  transforms, patterns = {}, []
  for i, group in enumerate(groups):
    pattern, multiplier, start = (tuple(group) + (0,))[:3]
    start = int(start * total_steps) if start < 1 else int(start)
    label = f"group{i}"
    patterns.append((re.compile(pattern), label))
    if not multiplier:
      transforms[label] = optax.set_to_zero()
      continue
    scaled = lambda step, m=multiplier, s=start: lr(step) * m * (step >= s)
    transforms[label] = _base_transform(opt, scaled)
  transforms["unmatched"] = optax.set_to_zero()

  def labels(params):
    def label(path, _):
      return first_match(path_name(path), patterns, "unmatched")
    return jax.tree_util.tree_map_with_path(label, params)

  return optax.multi_transform(transforms, labels)


def make_optimizer(opt: ml_collections.ConfigDict, sched: ml_collections.ConfigDict,
                   total_steps: int) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """`opt` = config.optimizer (name, momentum, nesterov, weight_decay, grad_clip_norm and
  optional `param_groups`, see `_grouped`: e.g. transfer learning's frozen base)."""
  lr = make_schedule(ml_collections.ConfigDict({**sched.to_dict(),
                                                "learning_rate": opt.learning_rate}),
                     total_steps)
  groups = opt.get("param_groups", ())
  tx = _grouped(opt, lr, groups, total_steps) if groups else _base_transform(opt, lr)
  clip = opt.get("grad_clip_norm", 0.0)
  if clip:
    tx = optax.chain(optax.clip_by_global_norm(clip), tx)
  return tx, lr
