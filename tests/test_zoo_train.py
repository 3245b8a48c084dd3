"""Every family trains end to end on `shapes` through the one launcher (the :test presets)."""

import json
import os
import subprocess
import sys

import ml_collections
import pytest

from cnn_lab.train.configs import validate
from cnn_lab.train.launch import load_config
from cnn_lab.train.loop import train_and_evaluate
from cnn_lab.train.optim import make_schedule
from tests.helpers import ROOT

FAMILIES = ["alexnet", "vgg", "resnet", "googlenet", "mobilenet", "efficientnet"]


@pytest.mark.parametrize("family", FAMILIES)
def test_family_trains_on_shapes(family, tmp_path):
  config = load_config(os.path.join(ROOT, "experiments", "configs",
                                    f"{family}_shapes.py:test"))
  result = train_and_evaluate(config, str(tmp_path))
  assert result["step"] == result["total_steps"] == 3 and result["eval/count"] == 200
  assert 0.0 <= result["eval/accuracy"] <= 1.0
  assert os.path.exists(tmp_path / "curves.png")


def test_unknown_family_preset():
  with pytest.raises(ValueError, match=r"preset: expected some of \['gpu', 'scratch', 'test', 'tpu', 'v1'\]"):
    load_config(os.path.join(ROOT, "experiments", "configs", "mobilenet_shapes.py:v3"))


def test_paper_preset_is_he_et_al_sgd_recipe():
  """`:paper` (`experiments.degradation --recipe=paper`): SGD, momentum 0.9, L2 1e-4,
  batch 128, learning rate 0.1 / 0.01 / 0.001 at 0, 1/2 and 3/4 of training."""
  config = load_config(os.path.join(ROOT, "experiments", "configs",
                                    "resnet_shapes.py:plain56,paper"))
  assert config.model.name == "plain56_cifar" and config.batch_size == 128
  assert (config.optimizer.name, config.optimizer.momentum, config.optimizer.weight_decay,
          config.optimizer.grad_clip_norm) == ("momentum", 0.9, 1e-4, 0.0)
  lr = make_schedule(ml_collections.ConfigDict(
      {**config.schedule.to_dict(), "learning_rate": config.optimizer.learning_rate}), 400)
  assert [float(lr(s)) for s in (0, 199, 200, 299, 300)] == pytest.approx(
      [0.1, 0.1, 0.01, 0.01, 0.001])
  validate(config)  # every key one the launcher takes (training is tested per family)


ZOO_MNIST = os.path.join(ROOT, "experiments", "configs", "zoo_mnist.py")


@pytest.mark.parametrize("family,expected_size", [
    ("alexnet", 64), ("mobilenet", 64), ("vgg", 32)])  # resized x2; padded
def test_zoo_mnist_presets_build_each_family_for_one_channel_digits(family, expected_size):
  """The family's MNIST network takes the 1-channel digits at the config's size (32;
  AlexNet, GoogLeNet, the MobileNets and EfficientNet 64) and gives 10 logits: shapes only
  (`nnx.eval_shape`), no data read. Every preset's config is validated by
  tests/test_contracts.py."""
  import jax
  import jax.numpy as jnp
  from flax import nnx

  from cnn_lab.train.experiment import build_model, check_model_keys
  from cnn_lab.train.tasks import make_task
  config = validate(load_config(f"{ZOO_MNIST}:{family}"))
  check_model_keys(config.model)
  model = build_model(config, make_task(config, 10), abstract=True)
  size = config.dataset.image_size
  assert size == expected_size
  x = jax.ShapeDtypeStruct((2, size, size, 1), jnp.float32)
  logits = nnx.eval_shape(lambda m, x: m(x), model, x)
  assert logits.shape == (2, 10)


def test_zoo_mnist_takes_one_family_resnet_by_default():
  assert load_config(ZOO_MNIST + ":test").model.name == "resnet20_cifar"
  assert load_config(ZOO_MNIST + ":vgg,test").model.name == "vgg11_bn"
  with pytest.raises(ValueError, match=r"zoo_mnist preset: expected one family of "
                                       r"\['alexnet', .*'vgg'\], received 'vgg,alexnet'"):
    load_config(ZOO_MNIST + ":vgg,alexnet")


def test_degradation_configures_every_network_with_the_papers_augmentation():
  """`experiments.degradation --augment`: translations of up to 4 pixels and left-right
  flips (`resnet_shapes.py:augment`) on each of the four networks, combined with
  `:paper`; without it the data are left as they are. `--init=he`: the paper's
  initialisation (flax's lecun otherwise). `--dataset`: the task, resized to the
  networks' 32x32."""
  from experiments.degradation import RUNS, Sweep, network_config
  for preset in RUNS.values():
    config = network_config(preset, Sweep(recipe="paper", epochs=2.0))
    assert (config.augment.max_shift, config.augment.hflip, config.augment.vflip) == (
        4.0, True, False)
    assert config.optimizer.name == "momentum" and config.num_epochs == 2.0
    assert config.model.init == "lecun"  # flax's
  plain = network_config("plain56", Sweep(augment=False, init="he", dataset="shapes/single_32"))
  assert plain.model.name == "plain56_cifar" and not plain.augment.max_shift
  assert not plain.augment.hflip and plain.optimizer.name == "adamw"
  assert plain.model.init == "he"
  assert (plain.dataset.name, plain.dataset.image_size) == ("shapes/single_32", 32)
  multi = network_config("", Sweep())
  assert (multi.dataset.name, multi.dataset.image_size) == ("shapes/multi_64", 32)
  assert multi.optimizer.b2 == 0.999 and multi.num_epochs == 30.0


def test_degradation_sets_adams_second_moment_decay_and_refuses_it_for_sgd():
  """`--adam_b2`: AdamW's b2 for every network; outside (0, 1), or other than the default
  with `--recipe=paper` (SGD, which has no second moment), it is refused by name."""
  from cnn_lab.errors import InputError
  from experiments.degradation import Sweep, network_config
  assert network_config("plain56", Sweep(adam_b2=0.99)).optimizer.b2 == 0.99
  for recipe, b2 in (("shapes", 1.0), ("shapes", 0.0), ("paper", 0.99)):
    with pytest.raises(InputError, match=rf"adam_b2: expected a number in \(0, 1\).*"
                       rf"received {b2}"):
      network_config("plain56", Sweep(recipe=recipe, adam_b2=b2))


def test_degradation_sets_the_peak_learning_rate_of_every_network():
  """`--learning_rate`: every network's peak rate; unset, 5e-4 with the shapes recipe
  (not the shapes configs' 2e-3: docs/degradation.md section 11) and the paper's 0.1
  with its own; not positive is refused by name."""
  from cnn_lab.errors import InputError
  from experiments.degradation import RUNS, Sweep, network_config
  for preset in RUNS.values():
    assert network_config(preset, Sweep()).optimizer.learning_rate == 5e-4
    assert network_config(preset, Sweep(learning_rate=2e-3)).optimizer.learning_rate == 2e-3
  assert network_config("", Sweep(recipe="paper")).optimizer.learning_rate == 0.1
  with pytest.raises(InputError, match=r"learning_rate: expected a positive number.*"
                     r"received 0.0"):
    network_config("", Sweep(learning_rate=0.0))


def test_degradation_sweep_writes_its_table_json_and_figure(tmp_path):
  """The command end to end on one network and 3 steps: the table, the PNG, and the JSON
  whose flags give the peak learning rate the networks trained at (the unset default
  resolved to 5e-4), the row kept in the network's workdir."""
  out = subprocess.run([sys.executable, "-m", "experiments.degradation",
                        f"--workdir={tmp_path}", "--epochs=0.05", "--networks=plain-20"],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-2000:]
  assert "plain-20" in out.stdout and "train_error" in out.stdout
  report = json.loads((tmp_path / "degradation.json").read_text())
  assert report["flags"]["learning_rate"] == 5e-4
  assert [(r["network"], r["steps"]) for r in report["rows"]] == [("plain-20", 3)]
  assert (tmp_path / "degradation.png").stat().st_size > 0
  assert (tmp_path / "seed0" / "plain-20" / "row.json").exists()


def test_degradation_summarises_each_network_over_the_seeds():
  """`--seeds=0,1,2`: one row per network and seed, then each network's mean and sample
  standard deviation; one seed gives a spread of 0."""
  from experiments.degradation import RUNS, seed_summary
  rows = [{"network": name, "seed": seed, "train_error": 0.1 * seed + i, "test_error": 0.5,
           "wall_s": 10.0 * (seed + 1)} for seed in (0, 1, 2) for i, name in enumerate(RUNS)]
  summary = seed_summary(rows)
  assert [r["network"] for r in summary] == list(RUNS) and summary[0]["seeds"] == 3
  assert summary[2]["train_error"] == pytest.approx(2.1)
  assert summary[2]["train_error_std"] == pytest.approx(0.1)
  assert summary[0]["test_error_std"] == 0.0 and summary[0]["wall_s"] == pytest.approx(20.0)
  assert seed_summary(rows[:4])[3]["train_error_std"] == 0.0
  plain56 = [r for r in rows if r["network"] == "plain-56"]  # `--networks=plain-56`
  assert [r["network"] for r in seed_summary(plain56)] == ["plain-56"]


def test_degradation_trains_the_networks_asked_for_in_the_tables_order():
  """`--networks`: a subset of the four, trained and tabled in RUNS' order; an unknown or
  empty list is refused before anything trains."""
  from cnn_lab.errors import InputError
  from experiments.degradation import parse_networks
  assert parse_networks(["ResNet-56", "plain-56"]) == ["plain-56", "ResNet-56"]
  with pytest.raises(InputError, match=r"networks: expected some of \['plain-20', "
                     r"'ResNet-20', 'plain-56', 'ResNet-56'\], received 'plain-32'"):
    parse_networks(["plain-32"])
  with pytest.raises(InputError, match="received ''"):
    parse_networks([])


def test_degradation_training_error_is_over_the_last_tenth_of_the_steps():
  """The final training error: the logged windows that start in the last tenth of the
  steps, weighted by their steps (the last window may be short); a step logged again
  after a resume counts once; one window longer than the tenth is used alone."""
  from experiments.degradation import final_training_error
  records = [{"step": s, "train/accuracy": s / 100} for s in range(10, 101, 10)]
  assert final_training_error(records) == pytest.approx(0.0)  # (90, 100]: 1.0
  assert final_training_error(records, fraction=0.25) == pytest.approx(0.05)  # (80, 100]
  short_last = [{"step": 80, "train/accuracy": 0.5}, {"step": 90, "train/accuracy": 0.8},
                {"step": 92, "train/accuracy": 0.0}, {"step": 85, "eval/accuracy": 0.1}]
  assert final_training_error(short_last, fraction=0.15) == pytest.approx(1 - 8 / 12)
  resumed = records + [{"step": 100, "train/accuracy": 0.5}]
  assert final_training_error(resumed) == pytest.approx(0.5)
  assert final_training_error([{"step": 7, "train/accuracy": 0.75}]) == 0.25


def test_degradation_keeps_a_trained_networks_wall_time(tmp_path, monkeypatch):
  """A network found trained (a resumed or extended `--seeds` sweep) keeps the wall time
  of the run that trained it, from its `row.json`, not the seconds it took to find it;
  one that trained further after a stop adds the two sessions' times."""
  import json

  import experiments.degradation as degradation

  def fake_train(config, workdir):  # a finished run: its metrics and final evaluation
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "metrics.jsonl"), "w") as f:
      f.write(json.dumps({"step": 10, "train/accuracy": 0.75}) + "\n")
    return {"step": 10, "total_steps": 10, "eval/accuracy": 0.5}

  monkeypatch.setattr(degradation, "train_and_evaluate", fake_train)
  first, records = degradation.train_network(None, str(tmp_path))
  assert (first["steps"], first["train_error"], first["test_error"]) == (10, 0.25, 0.5)
  assert records == [{"step": 10, "train/accuracy": 0.75}]
  (tmp_path / "row.json").write_text(json.dumps({**first, "wall_s": 1234.5}))
  again, _ = degradation.train_network(None, str(tmp_path))
  assert again == {**first, "wall_s": 1234.5}
  (tmp_path / "row.json").write_text(json.dumps({**first, "steps": 4, "wall_s": 1000.0}))
  resumed, _ = degradation.train_network(None, str(tmp_path))  # stopped at 4, now at 10
  assert resumed["steps"] == 10 and 1000.0 < resumed["wall_s"] < 1010.0
  assert json.loads((tmp_path / "row.json").read_text()) == resumed


def test_degradation_sweep_stops_where_a_sigterm_stopped_a_network(tmp_path, monkeypatch):
  """A SIGTERM stops the loop's run at a step boundary, saved, and the loop returns
  (`step` < `total_steps`); the sweep must stop there too, not go on to the next network
  (it did: a stopped plain-20 became a table row and ResNet-20 started). The stopped
  network's row keeps its wall time for the resumed run to add to."""
  import json

  import experiments.degradation as degradation
  monkeypatch.setattr(degradation, "train_and_evaluate", lambda config, workdir: (
      os.makedirs(workdir, exist_ok=True),
      {"step": 4, "total_steps": 10, "eval/accuracy": 0.5})[1])
  monkeypatch.setattr(degradation, "read_metrics",
                      lambda path: [{"step": 4, "train/accuracy": 0.5}])
  with pytest.raises(degradation.Stopped, match="stopped at step 4/10"):
    degradation.train_network(None, str(tmp_path))
  assert json.loads((tmp_path / "row.json").read_text())["steps"] == 4
  # stopped before its first logged step and evaluation (it raised IndexError, losing
  # the sweep's table): no training error to compute, only the step and wall time
  monkeypatch.setattr(degradation, "train_and_evaluate", lambda config, workdir: {
      "step": 7, "total_steps": 10})
  monkeypatch.setattr(degradation, "read_metrics", lambda path: [])
  with pytest.raises(degradation.Stopped, match="stopped at step 7/10"):
    degradation.train_network(None, str(tmp_path))
  row = json.loads((tmp_path / "row.json").read_text())
  assert row["steps"] == 7 and set(row) == {"steps", "wall_s"}
