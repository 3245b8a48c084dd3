"""The command line's one boundary: every bad input named in the README or an issue ends
in one `error: ...` line on stderr and exit status 1; a failed launch leaves no
workdir; a finished run relaunched writes nothing."""

import os
import subprocess
import sys

import pytest

from tests.helpers import ROOT

CONFIG = "experiments/configs/lenet5_digits.py:test"


def _train(workdir, *flags):
  return ["experiments.train", f"--config={CONFIG}", f"--workdir={workdir}", *flags]


CASES = {
    "unknown model": lambda d: _train(d / "run", "--config.model.name=nosuchnet"),
    "unknown dataset": lambda d: _train(d / "run", "--config.dataset.name=nosuchdata"),
    "unknown task": lambda d: _train(d / "run", "--config.task=nosuchtask"),
    "unknown config key": lambda d: _train(d / "run", "--config.optimizer.learnin_rate=0.1"),
    "a model key the family does not take": lambda d: [  # U-Net's filters on AlexNet
        "experiments.train", "--config=experiments/configs/unet_shapes.py:test",
        "--config.model.name=alexnet", f"--workdir={d / 'run'}"],
    "zero batch size": lambda d: _train(d / "run", "--config.batch_size=0"),
    "negative epochs": lambda d: _train(d / "run", "--config.num_train_steps=-1",
                                        "--config.num_epochs=-1"),
    "unknown preset": lambda d: ["experiments.train", f"--config={CONFIG},nosuchpreset",
                                 f"--workdir={d / 'run'}"],
    "missing config file": lambda d: ["experiments.train", "--config=nosuch.py",
                                      f"--workdir={d / 'run'}"],
    "unwritable workdir": lambda d: _train("/proc/cnn_lab_run"),
    "detect without a workdir": lambda d: ["experiments.detect", f"--workdir={d / 'none'}",
                                           "chelsea"],
    "segment on a folder that is no run": lambda d: ["experiments.segment",
                                                     f"--workdir={d}", "chelsea"],
    "summary of an unknown model": lambda d: ["experiments.summary", "--model=nosuchnet"],
    "summary with a zero channel": lambda d: ["experiments.summary", "--model=lenet5",
                                              "--input_shape=32,32,0"],
    "summary with no classes": lambda d: ["experiments.summary", "--model=lenet5",
                                          "--num_classes=0"],
    "predict without images": lambda d: ["experiments.predict"],
    "predict a missing image": lambda d: ["experiments.predict", str(d / "no.png")],
    "benchmark an unknown suite": lambda d: ["experiments.benchmark", "nosuchsuite"],
    "a seed that is no integer": lambda d: ["experiments.degradation", f"--workdir={d / 'run'}",
                                            "--seeds=0,x"],
    "a degradation on an unknown dataset": lambda d: [
        "experiments.degradation", f"--workdir={d / 'run'}", "--dataset=shapes/nope"],
    "a degradation of an unknown network": lambda d: [
        "experiments.degradation", f"--workdir={d / 'run'}", "--networks=plain-56,plain-32"],
}


# what some of the lines must say, beyond being one `error: ...` line
MESSAGES = {
    "unknown config key": ["--config.optimizer.learnin_rate: unknown config key",
                           "optimizer.learning_rate"],  # the near miss suggested
    "benchmark an unknown suite": [
        "suite: expected some of ['data', 'ops', 'peers', 'time_to_accuracy', 'train']"],
    "a seed that is no integer": [  # refused before seed 0 trains
        "seeds: expected comma-separated integers, e.g. 0,1,2, received '0,x'"],
    "a degradation on an unknown dataset": ["dataset: expected one of", "'shapes/multi_64'",
                                            "received 'shapes/nope'"],
    "a degradation of an unknown network": [  # refused before plain-56 trains
        "networks: expected some of ['plain-20', 'ResNet-20', 'plain-56', 'ResNet-56'], "
        "received 'plain-56,plain-32'"],
}


def _run(args, env=None):
  return subprocess.run([sys.executable, "-m", *map(str, args)], cwd=ROOT, capture_output=True,
                        text=True, timeout=300, env={**os.environ, **(env or {})})


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_one_error_line(case, tmp_path):
  done = _run(CASES[case](tmp_path))
  lines = [line for line in done.stderr.splitlines() if line.strip()]
  assert done.returncode == 1, done.stderr[-2000:]
  assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr[-2000:]
  for part in MESSAGES.get(case, ()):
    assert part in lines[0], lines[0]
  assert not (tmp_path / "run").exists(), "a failed launch left a workdir"


def test_the_traceback_is_there_when_asked_for(tmp_path):
  done = _run(CASES["unknown model"](tmp_path), env={"CNN_LAB_TRACEBACK": "1"})
  assert done.returncode != 0 and "Traceback" in done.stderr
  assert "model.name: expected one of" in done.stderr


def test_quiet_start_and_a_finished_run_writes_nothing(tmp_path):
  env = {"CNN_LAB_DATA_DIR": str(tmp_path / "data")}  # the first run prepares digits
  for name in ("first", "second"):
    done = _run(_train(tmp_path / name), env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stderr.splitlines()
    start = next(i for i, line in enumerate(lines) if "] Training " in line)
    assert start <= 3, lines[:start]
    assert "\r" not in done.stderr and "\x1b[" not in done.stderr
  def files():  # but the lock a relaunch takes and releases (workdir.WorkdirLock)
    return {p: p.stat().st_mtime_ns for p in (tmp_path / "second").rglob("*")
            if p.is_file() and p.name != ".lock"}
  before = files()
  done = _run(_train(tmp_path / "second"), env=env)
  assert done.returncode == 0
  lines = [line for line in done.stderr.splitlines() if line.strip()]
  assert len(lines) == 1 and "Already finished at step 30/30" in lines[0], lines
  assert "'eval/accuracy'" in done.stderr
  assert files() == before
  assert (tmp_path / "second" / ".lock").read_text() == ""  # released
