"""Scale and reproducibility: many devices, many processes, preemption, mixed precision,
no hidden transfers, no recompilation."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from cnn_lab.train.experiment import build_experiment
from cnn_lab.train.loop import train_and_evaluate
from cnn_lab.train import mesh as mesh_lib
from tests.helpers import (ROOT, assert_trees_bitwise_equal, launcher, saved_state,
                           small_config)

RESNET = os.path.join(ROOT, "experiments", "configs", "resnet_shapes.py")


def _env(devices: int) -> dict:
  return {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}


def _metrics(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f]


def _assert_metrics_close(a_records, b_records, rtol, train_count):
  """Same steps and keys; values to `rtol`, except accuracies, where a near-tie may flip
  an argmax (another CPU, another summation order): within 2 examples of what each
  counts, `eval/count` for eval accuracy and `train_count` (batch x steps per log line)
  for training accuracy."""
  assert [r["step"] for r in a_records] == [r["step"] for r in b_records]
  for a, b in zip(a_records, b_records):
    assert a.keys() == b.keys()
    for key in a:
      if key.endswith("accuracy"):
        count = a["eval/count"] if key.startswith("eval/") else train_count
        assert abs(a[key] - b[key]) <= 2 / count + 1e-9, (key, a["step"], a[key], b[key])
      else:
        np.testing.assert_allclose(a[key], b[key], rtol=rtol, atol=1e-6, err_msg=key)


def _assert_trees_close(a, b, rtol, leaf_rtol=1e-2):
  """||a - b|| <= rtol ||b|| over the whole tree, and leaf_rtol per leaf. Per leaf is
  looser because some leaves are sums with heavy cancellation (a BatchNorm bias whose
  output feeds another BatchNorm gets a gradient that is nearly zero), where float32
  rounding in another summation order shows as ~3e-3. A real data-parallel bug
  (per-device statistics, gradients summed instead of averaged) is O(1)."""
  assert jax.tree.structure(a) == jax.tree.structure(b)
  diff = total = 0.0
  for path, x, y in zip(jax.tree_util.tree_leaves_with_path(a), jax.tree.leaves(a),
                        jax.tree.leaves(b)):
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    diff, total = diff + np.sum((x - y) ** 2), total + np.sum(y ** 2)
    assert np.linalg.norm(x - y) <= leaf_rtol * np.linalg.norm(y) + 1e-7, \
        jax.tree_util.keystr(path[0])
  assert np.sqrt(diff) <= rtol * np.sqrt(total), np.sqrt(diff / total)


def test_eight_devices_train_like_one(tmp_path):
  """Data parallel over 8 simulated CPU devices == 1 device, BatchNorm statistics
  included (float32 tolerance: only the order of the sums differs)."""
  # SGD with momentum: Adam's m / sqrt(v) turns rounding in near-zero gradients into
  # O(1) differences of the update, which says nothing about data parallelism.
  # Two steps: a data-parallel bug (per-device statistics, gradients summed instead of
  # averaged) is O(1) from the first, while the rounding of another summation order
  # grows ~8x a step through BatchNorm at 2 examples per device (train loss 1e-7, 1e-7,
  # 9e-6, 8e-5, 1e-5, 5e-4 apart over 6 steps on an AVX2 Xeon, where 6 steps failed
  # these tolerances; other CPUs grew slower).
  flags = [f"--config={RESNET}:test", "--config.num_train_steps=2", "--config.batch_size=16",
           "--config.optimizer.name=momentum", "--config.optimizer.learning_rate=0.05",
           "--config.log_every_steps=1", "--config.eval_every_steps=2",
           "--config.checkpoint_every_steps=2"]
  runs = {}
  for devices in (1, 8):
    workdir = str(tmp_path / f"d{devices}")
    done = subprocess.run([sys.executable, "-m", "experiments.train", f"--workdir={workdir}",
                           *flags], cwd=ROOT, env=_env(devices), capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"on {devices} cpu device(s)" in done.stderr
    runs[devices] = workdir
  _assert_metrics_close(_metrics(runs[1]), _metrics(runs[8]), rtol=2e-4,
                        train_count=16 * 1)  # batch 16, a log line per step
  states = [saved_state(runs[d]) for d in (1, 8)]
  assert states[0]["batch_stats"], "the model has BatchNorm statistics"
  for part in ("params", "batch_stats"):
    _assert_trees_close(states[0][part], states[1][part], rtol=1e-4)
  # momentum traces accumulate raw gradients, whose BatchNorm-cancelled parts are
  # rounding-sized: measured 6e-3 apart as a whole, so only O(1) bugs are caught here
  _assert_trees_close(states[0]["opt_state"], states[1]["opt_state"], rtol=3e-2,
                      leaf_rtol=np.inf)


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def test_two_processes_train_like_one(tmp_path):
  """Two processes on localhost (gloo collectives), each reading its half of every
  global batch, end where one process over the same global batches ends."""
  flags = ["--config.num_train_steps=20"]
  single = str(tmp_path / "single")
  done = subprocess.run(launcher(single, *flags), cwd=ROOT, env=_env(1), capture_output=True,
                        text=True, timeout=300)
  assert done.returncode == 0, done.stderr[-2000:]
  multi = str(tmp_path / "multi")
  port = _free_port()
  procs = [subprocess.Popen(launcher(multi, *flags, f"--coordinator_address=localhost:{port}",
                                     "--num_processes=2", f"--process_id={i}"),
                            cwd=ROOT, env=_env(1), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True) for i in range(2)]
  errors = [p.communicate(timeout=300)[1] for p in procs]
  for p, err in zip(procs, errors):
    assert p.returncode == 0, err[-3000:]
  assert "on 2 cpu device(s)" in errors[0]
  # one writer: process 0's metrics, each step once, equal to the single process's
  _assert_metrics_close(_metrics(single), _metrics(multi), rtol=1e-4,
                        train_count=64 * 5)  # lenet5_digits:test: batch 64, logs every 5
  _assert_trees_close(saved_state(single)["params"], saved_state(multi)["params"], rtol=1e-4)


def _wait_for_step(workdir, proc, step, timeout=120):
  """Until the checkpoint of `step` is complete (orbax renames it into place)."""
  path = os.path.join(workdir, "checkpoints", str(step))
  deadline = time.time() + timeout
  while time.time() < deadline:
    if os.path.isdir(path):
      return
    assert proc.poll() is None, proc.communicate()
    time.sleep(0.02)
  raise TimeoutError(f"no checkpoint {step} appeared")


def test_preempted_at_several_points_resumes_bitwise(tmp_path):
  """One run killed three times (SIGKILL, SIGTERM, SIGKILL, each after a different
  checkpoint, mid-step), relaunched each time: the same parameters and metrics.jsonl
  as an uninterrupted run, data order included."""
  reference = str(tmp_path / "reference")
  train_and_evaluate(small_config(num_train_steps=40), reference)
  workdir = str(tmp_path / "preempted")
  flags = ["--config.num_train_steps=40"]
  stopped_at = []  # the step saved when each kill landed: where the next launch resumes
  for sig, after in ((signal.SIGKILL, 10), (signal.SIGTERM, 20), (signal.SIGKILL, 30)):
    proc = subprocess.Popen(launcher(workdir, *flags), cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    _wait_for_step(workdir, proc, after)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    if sig == signal.SIGTERM:  # a clean exit after saving where it stood
      assert proc.returncode == 0 and "SIGTERM received" in err, err[-2000:]
    if stopped_at:
      assert f"Resumed from the checkpoint at step {stopped_at[-1]}." in err, err[-2000:]
    stopped_at.append(saved_state(workdir)["step"])
    assert after <= stopped_at[-1] < 40, "each kill must land mid-training"
  done = subprocess.run(launcher(workdir, *flags), cwd=ROOT, capture_output=True, text=True,
                        timeout=300)
  assert done.returncode == 0, done.stderr[-2000:]
  assert f"Resumed from the checkpoint at step {stopped_at[-1]}." in done.stderr
  assert_trees_bitwise_equal(saved_state(reference), saved_state(workdir))
  with open(os.path.join(reference, "metrics.jsonl")) as a, \
       open(os.path.join(workdir, "metrics.jsonl")) as b:
    assert a.read() == b.read()


def test_bfloat16_compute_trains_with_float32_state(tmp_path):
  config = small_config(num_train_steps=30, compute_dtype="bfloat16")
  result = train_and_evaluate(config, str(tmp_path))
  records = _metrics(str(tmp_path))
  losses = [r["train/loss"] for r in records if "train/loss" in r]
  assert np.isfinite(losses).all() and losses[-1] < losses[0]
  assert result["eval/accuracy"] > 0.5
  state = saved_state(str(tmp_path))
  assert {np.asarray(x).dtype for x in jax.tree.leaves((state["params"], state["opt_state"]))
          if np.asarray(x).dtype.kind == "f"} == {np.dtype(np.float32)}
  exp = build_experiment(config)
  net = nnx.merge(exp.graphdef, exp.state.params, exp.state.batch_stats)
  assert net(jnp.zeros((2, 32, 32, 1))).dtype == jnp.bfloat16
  with pytest.raises(ValueError, match="compute_dtype: expected one of"):
    build_experiment(small_config(compute_dtype="float16"))


def test_training_steps_transfer_nothing_implicitly_and_compile_once():
  """The hot loop: explicit batch transfers only, and one compilation of each step."""
  exp = build_experiment(small_config())
  batches = exp.train_iterator()
  state = exp.state
  with jax.transfer_guard("disallow"):
    for _ in range(4):
      batch = mesh_lib.stack_batches([next(batches)])
      state, metrics = exp.train_steps(state, mesh_lib.global_batch(batch, exp.mesh, stacked=True))
    jax.device_get(metrics)  # explicit, as the loop fetches its metrics
    for batch in exp.eval_batches:  # the padded last batch included
      exp.eval_step(state, mesh_lib.global_batch(batch, exp.mesh))
  assert exp.train_steps._cache_size() == 1
  assert exp.eval_step._cache_size() == 1


def test_workdir_paths_local_and_bucket(tmp_path, monkeypatch):
  """Local workdirs become absolute, bucket URLs stay as they are; small files are
  written whole; a bucket whose file system is missing fails in one line."""
  import importlib.util

  from cnn_lab import paths
  from cnn_lab.train.workdir import ensure_writable
  monkeypatch.chdir(tmp_path)
  assert paths.resolve("run") == str(tmp_path / "run")
  assert paths.resolve("gs://bucket/run") == "gs://bucket/run"
  assert paths.join("gs://bucket/run", "metrics.jsonl") == "gs://bucket/run/metrics.jsonl"
  target = paths.join(ensure_writable("run"), "a.json")
  paths.write_atomic(target, "{}")
  assert paths.read_text(target) == "{}" and os.listdir(tmp_path / "run") == ["a.json"]
  if importlib.util.find_spec("gcsfs") is None:
    with pytest.raises(ValueError, match=r"workdir: expected a writable directory "
                                         r"\(ImportError: .*gcsfs.*gs://bucket/run"):
      ensure_writable("gs://bucket/run")


CONFIGS = sorted(f for f in os.listdir(os.path.join(ROOT, "experiments", "configs"))
                 if f.endswith(".py") and f not in ("__init__.py", "shapes_base.py"))


@pytest.mark.parametrize("name", CONFIGS)
def test_accelerator_presets_build_bfloat16_models(name):
  """Every config's `:tpu` preset builds its model with bfloat16 compute (abstractly:
  nothing is allocated) and float32 parameters."""
  from cnn_lab.data import datasets
  from cnn_lab.train.launch import load_config
  from cnn_lab.train.experiment import build_model
  from cnn_lab.train.tasks import make_task
  config = load_config(os.path.join(ROOT, "experiments", "configs", name) + ":tpu")
  spec = datasets.spec(config.dataset.name)
  task = make_task(config, spec.num_classes)
  graphdef, params, rest = nnx.split(nnx.eval_shape(lambda: build_model(config, task)),
                                     nnx.Param, ...)
  size = config.dataset.image_size
  image = jax.ShapeDtypeStruct((2, size, size, spec.image_shape[-1]), jnp.float32)
  out = jax.eval_shape(lambda p, r, x: nnx.merge(graphdef, p, r)(x), params, rest, image)
  if isinstance(out, dict):  # float32 by design: Faster R-CNN's proposal geometry, and
    # the pair classifier's parameters the face embedder hands to its loss
    out = {k: v for k, v in out.items()
           if k not in ("proposals", "proposal_valid", "pair_weights", "pair_bias")}
  assert {o.dtype for o in jax.tree.leaves(out)} == {jnp.dtype(jnp.bfloat16)}
  assert {p.dtype for p in jax.tree.leaves(params)} == {jnp.dtype(jnp.float32)}


SAVE_REPLICATED = """
import logging, sys
import jax, jax.numpy as jnp, numpy as np
from cnn_lab.train import mesh as mesh_lib
from cnn_lab.train.checkpoint import Checkpointer
repl = mesh_lib.replicated(jax.sharding.Mesh(np.array(jax.devices()), ("data",)))
state = {f"w{n}": jax.device_put(jnp.arange(n * 8.0).reshape(n, 8), repl) for n in (2, 3, 4, 6)}
compiled = []
class Count(logging.Handler):
  def emit(self, record):
    compiled.append(record.getMessage()) if "Compiling" in record.getMessage() else None
logging.getLogger("jax").addHandler(Count())
jax.config.update("jax_log_compiles", True)
checkpointer = Checkpointer(sys.argv[1])
checkpointer.save(1, state, {})
jax.config.update("jax_log_compiles", False)
restored, _, step = checkpointer.restore(jax.tree.map(lambda x: x, state))
assert step == 1 and all(np.array_equal(restored[k], state[k]) for k in state)
print(len(jax.devices()), "devices;", len(compiled), "compiled:", compiled[:3])
"""


def test_saving_a_replicated_state_compiles_nothing(tmp_path):
  """One process writes each replicated array whole: orbax's replica-parallel saving
  compiled a slicing program per array shape (9 s of GoogLeNet's first save)."""
  done = subprocess.run([sys.executable, "-c", SAVE_REPLICATED, str(tmp_path / "ckpt")],
                        cwd=ROOT, env=_env(2), capture_output=True, text=True, timeout=300)
  assert done.returncode == 0, done.stderr[-2000:]
  assert "2 devices; 0 compiled" in done.stdout, done.stdout
