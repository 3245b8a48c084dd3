"""What a launch spends before its first step: the decoded-split cache, the persistent
compilation cache, and the closing line that says where the time went."""

import os
import re

import jax
import numpy as np
import pytest

from cnn_lab.data import datasets
from cnn_lab.data.in_memory import InMemorySource, cache_file
from cnn_lab.train import launch
from cnn_lab.train.phases import Phases, process_seconds


class CountingSource:
  """A TFDS data source that counts its record reads."""

  def __init__(self, source):
    self.source, self.reads = source, 0
    self.dataset_info, self.split = source.dataset_info, source.split

  def __len__(self):
    return len(self.source)

  def __getitem__(self, i):
    self.reads += 1
    return self.source[i]


def _digits(tmp_path):
  return CountingSource(datasets.load_source("digits", "test", str(tmp_path)))


def test_a_split_is_decoded_once_then_read_from_its_cache(tmp_path):
  first = _digits(tmp_path)
  decoded = InMemorySource(first)
  path = cache_file(first, ("image", "label"))
  assert first.reads == len(first) and os.path.exists(path)
  assert path.startswith(str(tmp_path)) and path.endswith("decoded/test.image-label.npz")
  again = _digits(tmp_path)
  cached = InMemorySource(again)
  assert again.reads == 2  # the first and last records, to check the cache is this split's
  for key in ("image", "label"):
    np.testing.assert_array_equal(cached.arrays[key], decoded.arrays[key])


@pytest.mark.parametrize("damage", ["truncated", "other records"])
def test_a_damaged_or_foreign_cache_is_decoded_again(tmp_path, caplog, damage):
  source = _digits(tmp_path)
  expected = InMemorySource(source).arrays
  path = cache_file(source, ("image", "label"))
  if damage == "truncated":
    with open(path, "r+b") as f:
      f.truncate(100)
  else:
    np.savez(path, image=expected["image"][::-1], label=expected["label"][::-1])
  again = _digits(tmp_path)
  rebuilt = InMemorySource(again)
  assert again.reads == len(again) + (damage == "other records") * 2
  np.testing.assert_array_equal(rebuilt.arrays["image"], expected["image"])
  assert "Decoding the split again" in caplog.text
  assert InMemorySource(_digits(tmp_path)).arrays["label"].shape == expected["label"].shape


def test_a_folder_that_cannot_be_written_is_read_without_the_cache(tmp_path, monkeypatch):
  def refuse(path, data):
    raise PermissionError(13, "Permission denied")
  monkeypatch.setattr("cnn_lab.paths.write_atomic", refuse)
  source = _digits(tmp_path)
  assert len(InMemorySource(source)) == len(source)
  assert not os.path.exists(cache_file(source, ("image", "label")))
  assert cache_file(object(), ("image",)) is None  # not a TFDS split: no cache
  # TFDS's mock data names a data dir it never prepared: nothing may be written there
  mock = type("Mock", (), {"split": "train",
                           "dataset_info": type("Info", (), {"data_dir": str(tmp_path)})})
  assert cache_file(mock, ("image",)) is None


def test_the_compilation_cache_is_on_by_default_and_can_be_turned_off(monkeypatch, tmp_path):
  keys = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs",
          "jax_persistent_cache_min_entry_size_bytes")
  before = {k: getattr(jax.config, k) for k in keys}
  try:
    jax.config.update("jax_compilation_cache_dir", None)
    monkeypatch.setenv(launch.COMPILATION_CACHE_ENV, "off")
    assert launch.use_compilation_cache() is None
    assert jax.config.jax_compilation_cache_dir is None
    monkeypatch.delenv(launch.COMPILATION_CACHE_ENV)
    default = launch.use_compilation_cache()  # one folder per host CPU
    assert default == os.path.join(launch.DEFAULT_COMPILATION_CACHE, launch.host_cpu_tag())
    assert launch.host_cpu_tag() == launch.host_cpu_tag() != ""
    jax.config.update("jax_compilation_cache_dir", None)
    monkeypatch.setenv(launch.COMPILATION_CACHE_ENV, str(tmp_path / "xla"))
    assert launch.use_compilation_cache() == str(tmp_path / "xla")
    assert jax.config.jax_persistent_cache_min_compile_time_secs == 0
    jax.config.update("jax_compilation_cache_dir", "/given")  # JAX_COMPILATION_CACHE_DIR
    assert launch.use_compilation_cache() == "/given"
  finally:
    for k, v in before.items():
      jax.config.update(k, v)


def test_phases_sum_their_visits_and_name_the_start_up(monkeypatch):
  from cnn_lab.train import phases as phases_module
  monkeypatch.setattr(phases_module, "_START_UP_CLAIMED", False)  # as in a fresh process
  phases = Phases()
  for _ in range(3):
    with phases("training"):
      pass
  with pytest.raises(ValueError), phases("evaluation"):
    raise ValueError  # an error still ends the phase
  assert list(phases.seconds) == ["training", "evaluation"]
  line = phases.summary()
  assert line.split(": ", 1)[1].startswith("start-up ")
  assert "training 0.0 s, evaluation 0.0 s, other " in line
  assert 0 < process_seconds() < 24 * 3600
  later = Phases()  # a second run in the process: from its own beginning, no start-up
  with later("training"):
    pass
  assert re.fullmatch(r"[\d.]+ s since this run began: training [\d.]+ s, other [\d.]+ s",
                      later.summary())
