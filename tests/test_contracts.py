"""The extension points alone: the task contract, configs from the code's defaults and
the one preset mechanism, the named random streams, and the loop's small units."""

import importlib
import pathlib

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

from cnn_lab.errors import InputError
from cnn_lab.train import configs
from cnn_lab.train.experiment import check_model_keys
from cnn_lab.train.loop import NonFiniteLossError, Run, check_finite
from cnn_lab.train.metrics import PendingMetrics
from cnn_lab.train.steps import STREAMS, step_keys
from cnn_lab.train.tasks import TASKS, TaskBase, make_task
from tests.helpers import ROOT, small_config

CONTRACT = ("name", "section", "keys", "headline", "from_config", "encode", "setup",
            "fitted", "with_fitted", "model_kwargs", "train_inputs", "batch_order",
            "augment", "loss", "eval_batch", "evaluate", "predict")


@pytest.mark.parametrize("name", sorted(TASKS))
def test_every_task_keeps_the_contract_and_builds_from_defaults(name):
  task_class = TASKS[name]
  assert issubclass(task_class, TaskBase) and task_class.name == name
  config = configs.make_config(name)
  if name == "segmentation":
    config.segmentation.num_classes = 3  # the mask's: no default
  task = make_task(config, num_classes=5)
  assert all(hasattr(task, attr) for attr in CONTRACT)
  assert set(task.defaults()) <= set(config)
  assert task.with_fitted({**task.fitted()}) == task


def test_a_key_a_task_does_not_read_is_refused_naming_it():
  config = configs.make_config("detection")
  config.detection.unlike_anything = 1
  with pytest.raises(InputError, match=r"detection.unlike_anything: expected a key of"):
    make_task(config, 8)
  with pytest.raises(InputError, match=r"augment.max_rotations: expected a key of augment"):
    configs.make_config("classification", augment=dict(max_rotations=3.0))


def test_fitted_anchors_round_trip_through_json():
  task = make_task(configs.make_config("detection"), 8)
  fitted = task.with_fitted({"anchors": [[0.1, 0.2]] * 5, "anchor_iou": 0.5})
  assert fitted.anchors == ((0.1, 0.2),) * 5 and fitted.fitted()["anchor_iou"] == 0.5


def test_configs_hold_no_other_tasks_sections():
  for name in TASKS:
    others = {s for t in TASKS.values() if t.name != name for s in t.defaults()}
    others -= set(TASKS[name].defaults())
    assert not others & set(configs.make_config(name)), name


def _config_modules():
  for path in sorted((pathlib.Path(ROOT) / "experiments" / "configs").glob("*.py")):
    module = importlib.import_module(f"experiments.configs.{path.stem}")
    if hasattr(module, "get_config"):
      yield module


@pytest.mark.parametrize("module", list(_config_modules()), ids=lambda m: m.__name__)
def test_every_config_applies_each_of_its_presets_alone(module):
  for preset in module.PRESETS:
    config = module.get_config(preset)
    assert config.task in TASKS
  with pytest.raises(InputError, match=r"preset: expected some of \["):
    module.get_config("nosuchpreset")


def test_presets_apply_in_order():
  calls = []
  presets = {"a": lambda c: calls.append("a"), "b": lambda c: calls.append("b")}
  configs.apply_presets(ml_collections.ConfigDict(), "b,a,", presets)
  assert calls == ["b", "a"]


def test_named_streams_are_distinct_and_keep_the_two_old_ones():
  keys = step_keys(jax.random.key(3), 7)
  assert set(keys) == set(STREAMS)
  data = {name: jax.random.key_data(k).tolist() for name, k in keys.items()}
  assert len({str(v) for v in data.values()}) == len(STREAMS)
  old_augment, old_dropout = jax.random.split(jax.random.fold_in(jax.random.key(3), 7))
  assert data["augment"] == jax.random.key_data(old_augment).tolist()
  assert data["dropout"] == jax.random.key_data(old_dropout).tolist()


def test_faster_rcnn_refuses_training_without_a_sampling_stream():
  """Refused while the training pass is traced (shapes only: building and running the
  model concretely took 10 s)."""
  from cnn_lab.models import create_model
  model = create_model("faster_rcnn", rngs=nnx.Rngs(0), num_classes=2, input_size=32,
                       abstract=True)
  boxes, classes = jnp.array([[[0.1, 0.1, 0.5, 0.5]]]), jnp.array([[1]])
  with pytest.raises(InputError, match="sampling"):
    nnx.eval_shape(lambda m: m(jnp.zeros((1, 32, 32, 3)), train=True,
                               rngs=nnx.Rngs(dropout=0), targets=(boxes, classes)), model)


def test_pending_metrics_summarise_then_clear():
  pending = PendingMetrics()
  for loss, lr in ((1.0, 0.1), (3.0, 0.2)):
    pending.append({"loss": jnp.float32(loss), "nonfinite": jnp.int32(0),
                    "learning_rate": jnp.float32(lr)})
  host = pending.to_host()
  assert all(isinstance(v, float) for m in host for v in m.values())
  summary = pending.take_summary()
  assert summary == {"train/loss": 2.0, "learning_rate": pytest.approx(0.2)}
  assert pending.items == [] and pending.take_summary() == {}


def test_check_finite_names_the_steps_and_the_last_good_checkpoint():
  check_finite([{"nonfinite": 0.0}] * 3, 1, 3, "none")
  with pytest.raises(NonFiniteLossError, match=r"between steps 4 and 6.*step 3 in /ckpt"):
    check_finite([{"nonfinite": 0.0}, {"nonfinite": 1.0}], 4, 6, "step 3 in /ckpt")


def test_a_run_saves_its_step_position_and_pending_metrics_and_resumes_them(tmp_path):
  from cnn_lab.train.experiment import build_experiment
  config = small_config(num_train_steps=4, log_every_steps=100)
  exp = build_experiment(config)
  run = Run(config, exp, str(tmp_path))
  run.train_step()
  run.train_step()
  run.save()
  run.close()
  assert run.last_saved == 2 and len(run.pending.items) == 2
  again = Run(config, build_experiment(config), str(tmp_path))
  try:
    assert again.step == 2 and again.pending.items == run.pending.items
    first, second = next(run.data_iter), next(again.data_iter)
    np.testing.assert_array_equal(first["image"], second["image"])
  finally:
    again.close()


@pytest.mark.parametrize("key, value, expected", [
    ("batch_size", 0, "batch_size: expected an integer >= 1, received 0"),
    ("batch_size", -1, "batch_size: expected an integer >= 1"),
    ("eval_batch_size", 0, "eval_batch_size: expected an integer >= 1"),
    ("log_every_steps", 0, "log_every_steps: expected an integer >= 1"),
    ("checkpoint_every_steps", 0, "checkpoint_every_steps: expected an integer >= 1"),
    ("keep_checkpoints", 0, "keep_checkpoints: expected an integer >= 1"),
    ("optimizer.learning_rate", -0.1, "optimizer.learning_rate: expected a finite number > 0"),
    ("num_epochs", -1.0, "num_epochs: expected a finite number > 0"),
])
def test_out_of_range_values_are_refused_before_anything_is_built(key, value, expected):
  overrides = {key: value, "num_train_steps": -1} if key == "num_epochs" else {key: value}
  with pytest.raises(InputError, match=re_escape(expected)):
    configs.validate(small_config(**overrides))


def test_every_config_and_preset_passes_validation():
  for module in _config_modules():
    for preset in module.PRESETS:
      configs.validate(module.get_config(preset))
      check_model_keys(module.get_config(preset).model)
    configs.validate(module.get_config())


def test_a_model_key_the_family_does_not_take_is_refused_listing_its_keys():
  """Issue 18's example: stochastic depth on VGG, which has none."""
  from experiments.configs import vgg_shapes
  config = vgg_shapes.get_config()
  config.model.stochastic_depth = 0.1
  with pytest.raises(InputError, match=re_escape(
      "model.stochastic_depth: expected a key vgg11_bn takes (batch_norm, dropout_rate, "
      "head, impl), received 0.1")):
    check_model_keys(config.model)
  config.model.input_size = 64  # set from the dataset, never from model
  del config.model["stochastic_depth"]
  with pytest.raises(InputError, match="model.input_size: expected a key vgg11_bn takes"):
    check_model_keys(config.model)


def test_a_presets_keys_are_read_from_its_class_without_building_it(monkeypatch):
  """Presets are `functools.partial`s of their family's class: the keys come from the
  class's `__init__` (less what the preset binds by position: VGG's depth), with no
  model built (an abstract GoogLeNet took 2 s of every launch)."""
  from cnn_lab.models import registry

  def refuse(factory):
    raise AssertionError("built a model to read its keys")
  monkeypatch.setattr(registry, "abstract_model", refuse)
  registry.model_options.cache_clear()
  try:
    aux = registry.model_options("googlenet_aux")
    assert "aux_logits" in aux and "dropout_rate" in aux and "rngs" not in aux
    assert "depth" not in registry.model_options("vgg11_bn")
    assert "input_size" in registry.model_options("efficientnet_b3")  # a default it binds
  finally:
    registry.model_options.cache_clear()


def re_escape(text: str) -> str:
  import re
  return re.escape(text)
