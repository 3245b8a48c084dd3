"""Training tasks: one module each, every one defining `TASK`, a class that keeps the
contract of `cnn_lab.train.tasks.base` (read that docstring first).

A new task is one new module here (found by this package, no registry line) and the
config that names it in `config.task`.
"""

from __future__ import annotations

import importlib
import pkgutil

import ml_collections

from cnn_lab.errors import fail
from cnn_lab.train.tasks.base import Task, TaskBase

_NOT_TASKS = ("base", "detectors")  # the contract and a shared base class


def _discover() -> dict:
  found = {}
  for module in pkgutil.iter_modules(__path__):
    if module.name not in _NOT_TASKS:
      task = importlib.import_module(f"{__name__}.{module.name}").TASK
      found[task.name] = task
  return found


TASKS: dict[str, type] = _discover()


def make_task(config: ml_collections.ConfigDict, num_classes: int) -> Task:
  """The task `config.task` with its settings from `config` (see `Task.from_config`)."""
  if config.task not in TASKS:
    raise fail("task", f"one of {sorted(TASKS)}", config.task)
  return TASKS[config.task].from_config(config, num_classes)


__all__ = ["TASKS", "Task", "TaskBase", "make_task"]
