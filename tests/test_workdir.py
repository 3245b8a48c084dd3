"""Runs own their workdir: the lock, relaunch checks, honest recovery, read-only tools,
damaged datasets (the cases of docs/reliability.md)."""

import dataclasses
import errno
import json
import logging
import os
import shutil
import socket
import subprocess
import sys

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from cnn_lab import paths
from cnn_lab.data import datasets
from cnn_lab.errors import InputError, RunStoppedError, UnavailableError
from cnn_lab.train.checkpoint import CheckpointWriteError, UnreadableCheckpointsError
from cnn_lab.train.loop import NonFiniteParamsError, train_and_evaluate
from cnn_lab.train.restore import load_run
from cnn_lab.train.workdir import WorkdirLock
from tests.helpers import ROOT, assert_trees_bitwise_equal, saved_state, small_config


@pytest.fixture(scope="module")
def run20(tmp_path_factory):
  """A finished 20-step run (checkpoints at steps 10 and 20) that tests copy."""
  workdir = str(tmp_path_factory.mktemp("run20"))
  train_and_evaluate(small_config(num_train_steps=20), workdir)
  return workdir


def copy_of(run: str, tmp_path) -> str:
  target = str(tmp_path / "run")
  shutil.copytree(run, target)
  return target


def snapshot(workdir: str) -> dict:
  """Every file (but the lock) -> (size, mtime): what a refusal must leave alone."""
  out = {}
  for root, _, files in os.walk(workdir):
    for name in files:
      if name != ".lock":
        path = os.path.join(root, name)
        out[os.path.relpath(path, workdir)] = (os.path.getsize(path), os.stat(path).st_mtime_ns)
  return out


def read(path: str) -> str:
  with open(path) as f:
    return f.read()


def garble_states(workdir: str, steps=None) -> None:
  root = os.path.join(workdir, "checkpoints")
  for step in steps or [d for d in os.listdir(root) if d.isdigit()]:
    for folder, _, files in os.walk(os.path.join(root, str(step), "state")):
      for name in files:
        with open(os.path.join(folder, name), "wb") as f:
          f.write(b"garbage")


HOLD = ("import sys, time\nfrom cnn_lab.train.workdir import WorkdirLock\n"
        "lock = WorkdirLock(sys.argv[1]).acquire()\nprint('held', flush=True)\ntime.sleep(600)\n")


def test_a_second_launcher_is_refused_and_a_killed_holders_lock_taken_over(tmp_path, caplog):
  workdir = str(tmp_path)
  holder = subprocess.Popen([sys.executable, "-c", HOLD, workdir], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True)
  try:
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(InputError, match=rf"workdir: .*in use by pid {holder.pid} on "
                                         rf"{socket.gethostname()} since 20"):
      train_and_evaluate(small_config(), workdir)
    assert os.listdir(workdir) == [".lock"]  # nothing built, nothing written
  finally:
    holder.kill()
    holder.wait()
  caplog.set_level(logging.WARNING)
  WorkdirLock(workdir).acquire().release()
  assert f"Took over the workdir lock of pid {holder.pid}" in caplog.text


def test_a_changed_model_or_batch_is_refused_naming_the_keys(run20, tmp_path):
  workdir = copy_of(run20, tmp_path)
  before = snapshot(workdir)
  config = small_config(num_train_steps=20, batch_size=16, **{"model.name": "lenet5"})
  with pytest.raises(RunStoppedError) as refused:
    train_and_evaluate(config, workdir)
  message = str(refused.value)
  assert "batch_size 64 -> 16" in message and "model.name 'lenet5_modern' -> 'lenet5'" in message
  assert "--start_over" in message and "\n" not in message
  assert snapshot(workdir) == before  # nothing renamed, nothing retrained


def test_a_new_learning_rate_or_length_resumes_only_when_asked(run20, tmp_path, caplog):
  workdir = copy_of(run20, tmp_path)
  before = snapshot(workdir)
  config = small_config(num_train_steps=30, log_every_steps=2,
                        **{"optimizer.learning_rate": 5e-4})
  with pytest.raises(RunStoppedError, match="--resume_with_changes") as refused:
    train_and_evaluate(config, workdir)
  assert "num_train_steps 20 -> 30" in str(refused.value)
  assert "optimizer.learning_rate" in str(refused.value)
  assert "log_every_steps" not in str(refused.value)  # cadence may change freely
  assert snapshot(workdir) == before
  caplog.set_level(logging.INFO)
  result = train_and_evaluate(config, workdir, resume_with_changes=True)
  assert "Resuming with config changes" in caplog.text
  assert "Resumed from the checkpoint at step 20" in caplog.text
  assert result["step"] == 30
  assert json.loads(read(os.path.join(workdir, "config.json")))["num_train_steps"] == 30


def test_a_damaged_config_json_is_refused_in_one_line(run20, tmp_path):
  workdir = copy_of(run20, tmp_path)
  with open(os.path.join(workdir, "config.json"), "w") as f:
    f.write('{"model": {"na')
  before = snapshot(workdir)
  with pytest.raises(RunStoppedError, match="config.json cannot be read .*--start_over"):
    train_and_evaluate(small_config(num_train_steps=20), workdir)
  assert snapshot(workdir) == before


def test_read_only_tools_never_change_a_workdir(run20, tmp_path, caplog):
  workdir = copy_of(run20, tmp_path)
  garble_states(workdir, [20])
  before = snapshot(workdir)
  caplog.set_level(logging.WARNING)
  assert load_run(workdir).step == 10  # falls back, renames nothing
  assert "step 20" in caplog.text and "using step 10" in caplog.text
  config_path = os.path.join(workdir, "config.json")
  config = json.loads(read(config_path))
  config["model"]["name"] = "lenet5"  # a config that no longer matches the checkpoints
  with open(config_path, "w") as f:
    json.dump(config, f)
  before = snapshot(workdir)
  with pytest.raises(UnreadableCheckpointsError, match="nothing was changed"):
    load_run(workdir)
  assert snapshot(workdir) == before


def test_all_checkpoints_unreadable_stop_until_asked_to_start_over(run20, tmp_path):
  workdir = copy_of(run20, tmp_path)
  garble_states(workdir)
  before = snapshot(workdir)
  with pytest.raises(UnreadableCheckpointsError,
                     match="none of the 2 checkpoint.*nothing was changed.*--start_over"):
    train_and_evaluate(small_config(num_train_steps=20), workdir)
  assert snapshot(workdir) == before
  result = train_and_evaluate(small_config(num_train_steps=20), workdir, start_over=True)
  assert result["step"] == 20
  assert sorted(os.listdir(os.path.join(workdir, "previous_run_1", "checkpoints"))) == \
      ["10", "20"]
  assert read(os.path.join(workdir, "metrics.jsonl")) == read(os.path.join(run20,
                                                                          "metrics.jsonl"))
  assert_trees_bitwise_equal(saved_state(run20), saved_state(workdir))


def test_damaged_data_part_metrics_line_and_temporaries_recover_announced(run20, tmp_path,
                                                                         caplog):
  workdir = copy_of(run20, tmp_path)
  with open(os.path.join(workdir, "checkpoints", "20", "data", "metadata"), "w") as f:
    json.dump({"pending_metrics": []}, f)  # the iterator position lost
  metrics = os.path.join(workdir, "metrics.jsonl")
  text = read(metrics)
  with open(metrics, "w") as f:
    f.write(text[:-7])  # the last line cut short
  for name in (".metrics.jsonl.tmp.4242", ".write_test.4242"):
    with open(os.path.join(workdir, name), "w") as f:
      f.write("x")
  caplog.set_level(logging.INFO)
  result = train_and_evaluate(small_config(num_train_steps=20), workdir)
  assert "Checkpoint at step 20" in caplog.text and "resuming from step 10" in caplog.text
  assert "skipped 1 damaged line(s)" in caplog.text
  assert "Removed 2 temporary file(s)" in caplog.text
  assert result["step"] == 20 and not any(".tmp." in n or n.startswith(".write_test")
                                          for n in os.listdir(workdir))
  assert read(metrics) == read(os.path.join(run20, "metrics.jsonl"))
  assert_trees_bitwise_equal(saved_state(run20), saved_state(workdir))


def test_diverged_parameters_are_never_saved(tmp_path):
  """A learning rate x1e30 from step 15: step 16's parameters are finite but overflow
  when squared; saving every step, the last checkpoint must still be step 15's."""
  config = small_config(**{"optimizer.name": "sgd", "schedule.name": "piecewise",
                          "schedule.boundaries": (15,), "schedule.scales": (1e30,),
                          "optimizer.learning_rate": 0.01, "checkpoint_every_steps": 1,
                          "log_every_steps": 5})
  with pytest.raises(NonFiniteParamsError, match="after step 16 .* Last good checkpoint: "
                                                 "step 15"):
    train_and_evaluate(config, str(tmp_path))
  state = saved_state(str(tmp_path))
  assert state["step"] == 15
  assert max(float(np.abs(v).max()) for v in jax.tree.leaves(state["params"])) < 1e19


def test_a_full_disk_stops_in_one_line_with_the_last_checkpoint_named(tmp_path, monkeypatch):
  save = ocp.CheckpointManager.save

  def full_at_20(self, step, *args, **kwargs):
    if step == 20:
      raise ValueError('RESOURCE_EXHAUSTED: Error writing "opt_state" ...\nmore lines')
    return save(self, step, *args, **kwargs)

  monkeypatch.setattr(ocp.CheckpointManager, "save", full_at_20)
  with pytest.raises(CheckpointWriteError) as stopped:
    train_and_evaluate(small_config(num_train_steps=20), str(tmp_path / "a"))
  assert "\n" not in str(stopped.value)
  assert "step 20" in str(stopped.value) and "the one at step 10 is intact" in str(stopped.value)
  monkeypatch.undo()

  write = paths.write_atomic

  def full_metrics(path, data):
    if path.endswith("metrics.jsonl") and data.count("\n") > 2:
      raise OSError(errno.ENOSPC, "No space left on device", path)
    return write(path, data)

  monkeypatch.setattr(paths, "write_atomic", full_metrics)
  with pytest.raises(RunStoppedError, match=r"could not write .*metrics.jsonl \(No space left "
                                            r"on device\); last good checkpoint"):
    train_and_evaluate(small_config(num_train_steps=20), str(tmp_path / "b"))


def test_write_atomic_leaves_no_temporary_when_the_write_fails(tmp_path):
  with pytest.raises(TypeError):
    paths.write_atomic(str(tmp_path / "a.json"), 42)  # not text nor bytes
  assert os.listdir(tmp_path) == []


def test_a_damaged_catalog_dataset_is_named_with_what_to_delete(tmp_path, monkeypatch):
  data_dir = str(tmp_path)
  builder = datasets.prepare("digits", data_dir)
  shard = next(p for p in builder.data_path.iterdir() if "test.array_record" in p.name)
  with open(shard, "r+b") as f:
    f.truncate(os.path.getsize(shard) // 3)
  spec = datasets.spec
  monkeypatch.setattr(datasets, "spec", lambda name: dataclasses.replace(spec(name),
                                                                         embedded=""))
  with pytest.raises(UnavailableError, match=rf"'digits' in {builder.data_dir} is damaged .*"
                                             "delete that folder"):
    datasets.prepare("digits", data_dir)
  assert os.path.exists(shard)  # a catalog dataset is never deleted for the user
  os.remove(os.path.join(builder.data_dir, "dataset_info.json"))
  with pytest.raises(UnavailableError, match="never completely prepared.*delete that folder"):
    datasets.prepare("digits", data_dir)


def test_first_missing_dir_is_the_top_folder_a_launch_creates(tmp_path):
  """A failed launch removes what it created, missing parents included
  (`experiments.degradation` makes `DIR/seed0/plain-20`)."""
  from cnn_lab.train.workdir import first_missing_dir
  assert first_missing_dir(str(tmp_path / "a" / "b" / "c")) == str(tmp_path / "a")
  assert first_missing_dir(str(tmp_path / "new")) == str(tmp_path / "new")
  assert first_missing_dir(str(tmp_path)) is None
  assert first_missing_dir("gs://bucket/run") is None
