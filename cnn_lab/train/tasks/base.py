"""The task contract: everything the shared steps, loop and tools ask of a task.

A task is a frozen dataclass whose fields are its settings, built from its config
section (`from_config`); one module of this package each. What a task declares:

  name, section     `config.task` value; the config section its settings come from
  keys, headline    record fields it reads; the `eval/` metric the curves plot
  from_config       (config, num_classes of the dataset) -> task
  encode            a record transform making those fields fixed in shape, or None
  setup, fitted,    fit to the training data (YOLO's anchors) -> fitted task; the fitted
    with_fitted     values as JSON (saved with the settings in the workdir's task.json)
                    and the task again from that dict
  model_kwargs      constructor arguments it adds to the model
  train_inputs      call arguments it adds in training (the objects R-CNN samples against)
  batch_order       which records make batch i (None: a fresh shuffle each epoch)
  augment           (batch, key) -> batch, on device, from the step's `augment` stream
  loss              (outputs, batch, key) -> (scalar, {name: scalar}); key: `mining`
  eval_batch        per-batch results the jitted eval step returns
  evaluate          (eval_step, state, batches) -> yields ("eval/name", value)
  predict           model outputs -> boxes, scores, classes (tasks that detect)

Randomness comes only through the keys the step passes (`cnn_lab.train.steps`); a
task never carries a key inside a batch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any, ClassVar, Protocol

import ml_collections

from cnn_lab.errors import fail


class Task(Protocol):
  """The contract, as a type (see the module docstring); `TaskBase` gives defaults."""
  name: ClassVar[str]
  section: ClassVar[str]
  keys: tuple[str, ...]
  headline: ClassVar[str]

  @classmethod
  def from_config(cls, config: ml_collections.ConfigDict, num_classes: int) -> "Task": ...
  def encode(self): ...
  def setup(self, train_source) -> "Task": ...
  def fitted(self) -> dict: ...
  def with_fitted(self, fitted: dict) -> "Task": ...
  def model_kwargs(self) -> dict: ...
  def train_inputs(self, batch: dict) -> dict: ...
  def batch_order(self, train_source, global_batch: int, seed: int): ...
  def augment(self, batch: dict, key) -> dict: ...
  def loss(self, outputs, batch: dict, key) -> tuple[Any, dict]: ...
  def eval_batch(self, outputs, batch: dict) -> dict: ...
  def evaluate(self, eval_step, state, batches) -> Iterator[tuple[str, float]]: ...
  def predict(self, outputs) -> dict: ...


def _frozen(value):
  """Config lists (JSON has no tuples) -> tuples, all the way down, for frozen fields."""
  if isinstance(value, (list, tuple)):
    return tuple(_frozen(v) for v in value)
  return value


def _config_value(value):
  """A default as a config value: nested dataclasses as dicts."""
  return dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value


def build_settings(cls, values: dict, where: str):
  """A dataclass `cls` from a config dict: nested dataclass fields from nested dicts,
  lists as tuples; a key `cls` lacks is refused, naming the valid ones."""
  fields = {f.name: f for f in dataclasses.fields(cls)}
  kwargs = {}
  for key, value in values.items():
    if key not in fields:
      raise fail(f"{where}.{key}", f"a key of {where}: {sorted(fields)}", key)
    default = fields[key].default
    if dataclasses.is_dataclass(default) and isinstance(value, dict):
      value = build_settings(type(default), value, f"{where}.{key}")
    kwargs[key] = _frozen(value)
  return cls(**kwargs)


class TaskBase:
  """Defaults every task shares: settings from its section, no record encoding, nothing
  fitted to the data, no extra model arguments, no augmentation, no predictions."""
  # config key -> field, where a field's name is taken by a method (e.g. `loss`)
  renamed: ClassVar[dict] = {}

  @classmethod
  def defaults(cls) -> dict:
    """{section: the settings' defaults as config values}: what a config starts from
    (`cnn_lab.train.configs`), so a config file holds only what it changes. Fields without a
    default (segmentation's `num_classes`) and those the dataset fills are left out."""
    names = {v: k for k, v in cls.renamed.items()}
    return {cls.section: {names.get(f.name, f.name): _config_value(f.default)
                          for f in dataclasses.fields(cls)
                          if f.default is not dataclasses.MISSING and f.name != "num_classes"}}

  @classmethod
  def from_config(cls, config: ml_collections.ConfigDict, num_classes: int):
    values = config[cls.section].to_dict() if cls.section in config else {}
    values = {cls.renamed.get(k, k): v for k, v in values.items()}
    if any(f.name == "num_classes" for f in dataclasses.fields(cls)):
      values.setdefault("num_classes", num_classes)
    return build_settings(cls, values, cls.section)

  def encode(self):
    return None

  def setup(self, train_source):
    del train_source
    return self

  def fitted(self) -> dict:
    return {}

  def with_fitted(self, fitted: dict):
    del fitted
    return self

  def model_kwargs(self) -> dict:
    return {}

  def train_inputs(self, batch: dict) -> dict:
    del batch
    return {}

  def batch_order(self, train_source, global_batch: int, seed: int):
    del train_source, global_batch, seed
    return None

  def augment(self, batch: dict, key) -> dict:
    del key
    return batch

  def predict(self, outputs) -> dict:
    raise fail("task", "a task that predicts boxes (localization, detection, two_stage)",
               self.name)


def ratios(totals: dict, pairs: dict) -> Iterator[tuple[str, float]]:
  """`eval/name` = totals[numerator] / totals[denominator] (at least 1) for each pair."""
  for name, (numerator, denominator) in pairs.items():
    yield f"eval/{name}", float(totals[numerator]) / max(float(totals[denominator]), 1.0)
