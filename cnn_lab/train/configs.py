"""Configs from the code's defaults, and the one preset mechanism.

A config file (`experiments/configs/*.py`) is `get_config(arg)`: `make_config(task,
**changes)` (every key the training reads, at its default, with the file's changes
merged in) followed by `apply_presets(config, arg, PRESETS)`. The file holds only what
it changes; its docstring gives the command and the result to expect.

The task's sections come from its settings' defaults (`Task.defaults`): a config
never holds, nor deletes, another task's sections.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

import ml_collections

from cnn_lab.errors import fail
from cnn_lab.train.tasks import TASKS

# What the training reads besides the task's sections, at the code's defaults.
TRAINING = {
    "seed": 0,
    # name: a `cnn_lab.data.datasets` name; train/eval_split: "" = the dataset's own;
    # train_per_class > 0: a few-shot subset (the same for every seed: `subset_seed`)
    "dataset": {"name": "digits", "data_dir": "", "cache": True, "image_size": 32,
                "mean": 0.5, "std": 0.5, "resize_method": "resize", "train_split": "",
                "eval_split": "", "train_per_class": 0, "subset_seed": 0},
    # name: a `cnn_lab.models` preset; other keys go to the family's constructor, except
    # `weights` ("imagenet" or a .pth path), loaded into a model's `pretrained_base`
    "model": {"name": "lenet5_modern", "impl": "xla"},
    "optimizer": {"name": "adamw", "learning_rate": 1e-3, "weight_decay": 1e-4, "b1": 0.9,
                  "b2": 0.999, "momentum": 0.9, "nesterov": False, "grad_clip_norm": 0.0,
                  "param_groups": ()},
    "schedule": {"name": "warmup_cosine", "warmup_steps": 100, "end_factor": 0.0,
                 "boundaries": (0.5, 0.75), "scales": (0.1, 0.1)},
    "batch_size": 64,
    "eval_batch_size": 128,
    "local_devices": 0,  # devices each process trains on, 0: all (CPU: those that divide)
    "compute_dtype": "float32",  # or "bfloat16": activations; parameters stay float32
    "num_epochs": 10.0,
    "num_train_steps": -1,  # > 0 overrides num_epochs
    "log_every_steps": 100,
    "eval_every_steps": 1000,
    "checkpoint_every_steps": 1000,
    "keep_checkpoints": 3,
    # training steps run by one dispatch to the device (written out one after the other
    # in one jitted call); the same result as 1, bitwise. Must divide the three
    # intervals above. On CPU it buys little (README "Performance").
    "steps_per_dispatch": 1,
}
OPEN_SECTIONS = ("model",)  # keys go to the model family: any name is allowed


def defaults(task: str = "classification") -> dict:
  """Every key a `task` run reads, at the code's defaults (a plain nested dict)."""
  if task not in TASKS:
    raise fail("task", f"one of {sorted(TASKS)}", task)
  return {"task": task, **copy.deepcopy(TRAINING), **TASKS[task].defaults()}


def _check_keys(base: dict, changes: dict, where: str = "") -> None:
  """Refuses a key of `changes` that `base` lacks (dicts recursively), unless `base` is
  an open section."""
  for key, value in changes.items():
    name = f"{where}.{key}" if where else key
    if key not in base and where not in OPEN_SECTIONS:
      raise fail(name, f"a key of {where or 'the config'}: {sorted(base)}", key)
    if isinstance(value, dict) and isinstance(base.get(key), dict):
      _check_keys(base[key], value, name)


def make_config(task: str = "classification", **changes) -> ml_collections.ConfigDict:
  """The defaults of `task` with `changes` (section=dict(key=value), or key=value)."""
  base = defaults(task)
  _check_keys(base, changes)
  return ml_collections.ConfigDict(merge(base, changes))


def apply_presets(config: ml_collections.ConfigDict, arg: str | None,
                  presets: dict[str, Callable[[ml_collections.ConfigDict], None]]
                  ) -> ml_collections.ConfigDict:
  """Applies the comma-separated presets of `arg` (`file.py:test,gpu`) in order; each
  is a function that changes the config in place."""
  for name in (arg or "").split(","):
    if not name:
      continue
    if name not in presets:
      raise fail("preset", f"some of {sorted(presets)}", name)
    presets[name](config)
  return config


def merge(*changes: dict) -> dict:
  """Change sets merged left to right (dicts key by key): a family's recipe over a
  shared one, before `make_config` checks the keys."""
  out: dict = {}
  for change in changes:
    for key, value in change.items():
      if isinstance(value, dict) and isinstance(out.get(key), dict):
        value = merge(out[key], value)
      out[key] = value
  return out


# key -> (test, what is expected): the training values checked before anything is built
def _is_int(value) -> bool:
  return isinstance(value, int) and not isinstance(value, bool)


_POSITIVE_INT = (lambda v: _is_int(v) and v >= 1, "an integer >= 1")
CHECKS = {
    "batch_size": _POSITIVE_INT,
    "eval_batch_size": _POSITIVE_INT,
    "log_every_steps": _POSITIVE_INT,
    "eval_every_steps": _POSITIVE_INT,
    "checkpoint_every_steps": _POSITIVE_INT,
    "keep_checkpoints": _POSITIVE_INT,
    "steps_per_dispatch": _POSITIVE_INT,
    "dataset.image_size": _POSITIVE_INT,
    "seed": (lambda v: _is_int(v) and v >= 0, "an integer >= 0"),
    "num_train_steps": (_is_int, "an integer (> 0: the number of steps; <= 0: use num_epochs)"),
    "optimizer.learning_rate": (lambda v: isinstance(v, (int, float)) and 0 < v < float("inf"),
                                "a finite number > 0"),
}


def validate(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Refuses a training value out of its range, naming the key, the range and the value
  (`CHECKS`; `num_epochs` > 0 where `num_train_steps` does not set the length)."""
  for key, (ok, expected) in CHECKS.items():
    node = config
    for part in key.split("."):
      node = node[part]
    if not ok(node):
      raise fail(key, expected, node)
  if config.num_train_steps <= 0 and not (
      isinstance(config.num_epochs, (int, float)) and 0 < config.num_epochs < float("inf")):
    raise fail("num_epochs", "a finite number > 0 (or num_train_steps > 0)", config.num_epochs)
  _check_dispatch(config)
  return config


def _check_dispatch(config: ml_collections.ConfigDict) -> None:
  """`steps_per_dispatch` must divide the log, eval and checkpoint intervals, so that
  every step the loop acts on ends a dispatch."""
  k = config.steps_per_dispatch
  intervals = {key: config[key] for key in ("log_every_steps", "eval_every_steps",
                                            "checkpoint_every_steps")}
  if any(every % k for every in intervals.values()):
    common = math.gcd(*intervals.values())
    valid = [d for d in range(1, common + 1) if common % d == 0]
    named = ", ".join(f"{key}={every}" for key, every in intervals.items())
    raise fail("steps_per_dispatch", f"a divisor of {named}: one of {valid}", k)
