"""The digits builder, the grain pipelines and catalog-dataset failure modes."""

import os

import numpy as np
import pytest

from cnn_lab.data import datasets
from cnn_lab.data.digits import split_indices
from cnn_lab.data.in_memory import InMemorySource
from cnn_lab.data.pipeline import Preprocess, eval_dataset, train_dataset


@pytest.fixture(scope="module")
def digits():
  return {s: InMemorySource(datasets.load_source("digits", s)) for s in ("train", "test")}


def test_digits_builder_split_and_features(digits):
  assert (len(digits["train"]), len(digits["test"])) == (1437, 360)
  record = digits["train"][0]
  assert record["image"].shape == (8, 8, 1) and record["image"].dtype == np.uint8
  assert record["image"].max() <= 255
  counts = np.bincount(digits["test"].arrays["label"], minlength=10)
  assert counts.min() >= 35 and counts.max() <= 37  # stratified
  idx = split_indices()
  assert not set(idx["train"]) & set(idx["test"])
  from sklearn.datasets import load_digits
  raw = load_digits()
  images = np.round(raw.images[idx["test"]] * 255 / 16).astype(np.uint8)
  as_rows = lambda im, lab: sorted(zip(map(bytes, im.reshape(len(im), -1)), lab.tolist()))
  assert as_rows(digits["test"].arrays["image"], digits["test"].arrays["label"]) == \
      as_rows(images, raw.target[idx["test"]])


def test_digits_split_is_sklearns_stratified_split():
  """The written-out test rows are what scikit-learn's stratified split gives (random
  state 0, 360 of 1,797), and the reader without scikit-learn gives `load_digits`'s data."""
  from sklearn.datasets import load_digits
  from sklearn.model_selection import train_test_split

  from cnn_lab.data.digits import load_arrays
  raw = load_digits()
  train, test = train_test_split(np.arange(len(raw.target)), test_size=360,
                                 stratify=raw.target, random_state=0)
  idx = split_indices()
  np.testing.assert_array_equal(idx["test"], np.sort(test))
  np.testing.assert_array_equal(idx["train"], np.sort(train))
  images, labels = load_arrays()
  np.testing.assert_array_equal(labels, raw.target)
  np.testing.assert_array_equal(images[..., 0],
                                np.round(raw.images * (255.0 / 16.0)).astype(np.uint8))


def test_train_pipeline_is_deterministic_resumable_and_reshuffles(digits):
  make = lambda seed: train_dataset(digits["train"], global_batch=64, seed=seed,
                                    preprocess=Preprocess(32, 0.5, 0.5))
  it = iter(make(0).to_iter_dataset())
  first = [next(it) for _ in range(3)]
  state = it.get_state()
  after = next(it)
  assert first[0]["image"].shape == (64, 32, 32, 1) and first[0]["image"].dtype == np.float32
  assert first[0]["label"].dtype == np.int32
  again = iter(make(0).to_iter_dataset())
  np.testing.assert_array_equal(next(again)["label"], first[0]["label"])
  resumed = iter(make(0).to_iter_dataset())
  resumed.set_state(state)
  np.testing.assert_array_equal(next(resumed)["image"], after["image"])
  other = iter(make(1).to_iter_dataset())
  assert not np.array_equal(next(other)["label"], first[0]["label"])
  # one epoch is 22 batches; the second epoch is another permutation
  labels = lambda epoch: np.concatenate([make(0)[epoch * 22 + i]["label"] for i in range(22)])
  assert not np.array_equal(labels(0), labels(1))


def test_hosts_read_their_slices_of_the_same_global_batches(digits):
  """Two hosts' batches i, side by side, are one host's batch i (so a multi-host run
  sees the data a single-process run sees), across an epoch boundary too."""
  make = lambda h, n: train_dataset(digits["train"], global_batch=64, seed=0,
                                    preprocess=Preprocess(32), process_index=h, process_count=n)
  for i in (0, 22):
    single = make(0, 1)[i]
    halves = [make(h, 2)[i] for h in range(2)]
    assert halves[0]["image"].shape == (32, 32, 32, 1)
    for key in ("image", "label"):
      np.testing.assert_array_equal(np.concatenate([b[key] for b in halves]), single[key])
  with pytest.raises(ValueError, match="batch_size: expected a multiple of the number of hosts"):
    train_dataset(digits["train"], global_batch=63, seed=0, preprocess=Preprocess(32),
                  process_count=2)


@pytest.mark.parametrize("hosts", [1, 2, 4])
def test_eval_counts_every_example_exactly_once(digits, hosts):
  seen = []
  for h in range(hosts):
    for batch in eval_dataset(digits["test"], global_batch=128, preprocess=Preprocess(8),
                              process_index=h, process_count=hosts):
      assert batch["image"].shape[0] == 128 // hosts
      seen.append(batch["image"][batch["mask"]])
  seen = np.concatenate(seen)
  assert len(seen) == 360
  expected = digits["test"].arrays["image"].astype(np.float32) / 255
  order = lambda a: a[np.lexsort(a.reshape(len(a), -1).T)]
  np.testing.assert_allclose(order(seen), order(expected), atol=1e-6)


def test_preprocess_resize_and_pad():
  batch = {"image": np.full((2, 8, 8, 1), 255, np.uint8), "label": np.array([1, 2])}
  out = Preprocess(32, 0.5, 0.5)(batch)
  assert out["image"].shape == (2, 32, 32, 1)
  np.testing.assert_allclose(out["image"], 1.0, atol=1e-6)
  padded = Preprocess(12, method="pad")(batch)["image"]
  assert padded.shape == (2, 12, 12, 1) and padded[0, 0, 0, 0] == 0 and padded[0, 2, 2, 0] == 1
  with pytest.raises(ValueError, match="preprocess.method: expected 'resize' or 'pad'"):
    Preprocess(32, method="crop")


def test_unknown_dataset_lists_valid_names():
  with pytest.raises(ValueError, match=r"dataset: expected one of \[.*'digits'.*'mnist'.*\] \(embedded.*, "
                     r"received 'mnsit'"):
    datasets.load_source("mnsit", "train")


def test_catalog_dataset_offline_fails_at_once_in_one_line(monkeypatch, tmp_path):
  monkeypatch.setattr(datasets, "_network_reachable",
                      lambda *a, **k: "gaierror: Name or service not known")
  with pytest.raises(datasets.DatasetUnavailableError) as info:
    datasets.load_source("fashion_mnist", "train", str(tmp_path))
  message = str(info.value)
  assert "\n" not in message
  assert "dataset 'fashion_mnist' is not prepared" in message and "cannot be downloaded" in message
  assert "pip install -e '.[tf]' && tfds build fashion_mnist" in message


def test_catalog_builder_and_feature_spec_offline(tmp_path):
  """TFDS's catalog mnist and our embedded one (`lecun_mnist`) have the same features,
  which our spec states."""
  import tensorflow_datasets as tfds
  catalog = tfds.builder("mnist", data_dir=str(tmp_path), file_format="array_record")
  ours = tfds.builder(datasets.builder_name("mnist"), data_dir=str(tmp_path),
                      file_format="array_record")
  for builder in (catalog, ours):
    features = builder.info.features
    assert features["image"].shape == datasets.spec("mnist").image_shape
    assert features["label"].num_classes == datasets.spec("mnist").num_classes
    assert not builder.is_prepared()
  assert ours.info.features["image"].np_dtype == np.uint8  # the catalog's is a PNG of uint8


@pytest.mark.parametrize("name,size", [("cifar10", 32), ("imagenette", 40)])
def test_catalog_switch_is_a_config_value(name, size, monkeypatch, tmp_path):
  """Offline, TFDS's mock data stands in for the catalog files; the code path is the real one
  (imagenette's images differ in size, so they are resized before batching)."""
  import tensorflow_datasets as tfds

  from cnn_lab.train.loop import train_and_evaluate
  from tests.helpers import small_config
  monkeypatch.setattr(datasets, "_network_reachable", lambda *a, **k: None)
  config = small_config(**{"dataset.name": name, "dataset.image_size": size,
                           "num_train_steps": 2, "eval_every_steps": 2, "batch_size": 8})
  with tfds.testing.mock_data(num_examples=24, policy=tfds.testing.MockPolicy.USE_CODE):
    result = train_and_evaluate(config, str(tmp_path))
  assert result["step"] == 2 and result["eval/count"] == 24


def _fix_mock_records(monkeypatch, fix):
  """Makes `datasets.load_source` return records passed through `fix` (TFDS's mock records
  break invariants the real ones keep)."""
  real_source = datasets.load_source

  class Fixed:
    def __init__(self, source):
      self.source = source

    def __len__(self):
      return len(self.source)

    def __getitem__(self, i):
      return fix(self.source[i])

  monkeypatch.setattr(datasets, "load_source", lambda *a: Fixed(real_source(*a)))


def test_voc_detection_runs_by_name_on_mock_data(monkeypatch, tmp_path):
  """`voc/2007` through the YOLO config's :voc preset: the real code path (variable image
  sizes, objects padded per record, k-means anchors) on TFDS's mock records."""
  import tensorflow_datasets as tfds

  from cnn_lab.train.launch import load_config
  from cnn_lab.train.loop import train_and_evaluate
  from tests.helpers import ROOT
  monkeypatch.setattr(datasets, "_network_reachable", lambda *a, **k: None)

  def consistent(record):  # mock sequences get independent lengths; real VOC records do not
    n = min(len(v) for v in record["objects"].values())
    return {**record, "objects": {k: v[:n] for k, v in record["objects"].items()}}

  _fix_mock_records(monkeypatch, consistent)
  config = load_config(os.path.join(ROOT, "experiments", "configs", "yolo_shapes.py:test,voc"))
  config.dataset.image_size, config.eval_batch_size = 64, 8
  with tfds.testing.mock_data(num_examples=16, policy=tfds.testing.MockPolicy.USE_CODE):
    result = train_and_evaluate(config, str(tmp_path))
  assert result["step"] == 3 and result["eval/count"] == 16
  assert 0.0 <= result["eval/voc_mAP50"] <= 1.0


def test_pets_segmentation_runs_by_name_on_mock_data(monkeypatch, tmp_path):
  """`oxford_iiit_pet` through the U-Net config's :pets preset on TFDS's mock records
  (whose masks get the image's size and ids 1..3, as the real ones have)."""
  import tensorflow_datasets as tfds
  from PIL import Image

  from cnn_lab.train.launch import load_config
  from cnn_lab.train.loop import train_and_evaluate
  from tests.helpers import ROOT
  monkeypatch.setattr(datasets, "_network_reachable", lambda *a, **k: None)

  def consistent(record):
    h, w = np.shape(record["image"])[:2]
    mask = np.asarray(record["segmentation_mask"])[..., 0] % 3 + 1
    mask = np.asarray(Image.fromarray(mask.astype(np.uint8)).resize((w, h), Image.NEAREST))
    return {**record, "segmentation_mask": mask[..., None]}

  _fix_mock_records(monkeypatch, consistent)
  config = load_config(os.path.join(ROOT, "experiments", "configs",
                                    "unet_shapes.py:test,pets"))
  config.dataset.image_size, config.eval_batch_size = 32, 8
  with tfds.testing.mock_data(num_examples=16, policy=tfds.testing.MockPolicy.USE_CODE):
    result = train_and_evaluate(config, str(tmp_path))
  assert result["step"] == 3 and result["eval/count"] == 16
  assert {"eval/iou/pet", "eval/mean_iou"} <= set(result)


def test_transfer_config_runs_on_tf_flowers_by_name(monkeypatch, tmp_path):
  """`tf_flowers` (one upstream split, sliced 80/20 here) through the transfer config's
  :flowers preset, on TFDS's mock records."""
  import tensorflow_datasets as tfds

  from cnn_lab.train.launch import load_config
  from cnn_lab.train.loop import train_and_evaluate
  from tests.helpers import ROOT
  monkeypatch.setattr(datasets, "_network_reachable", lambda *a, **k: None)
  config = load_config(os.path.join(ROOT, "experiments", "configs",
                                    "transfer_shapes.py:test,flowers"))
  config.dataset.image_size, config.eval_batch_size, config.num_train_steps = 32, 8, 2
  with tfds.testing.mock_data(num_examples=20, policy=tfds.testing.MockPolicy.USE_CODE):
    result = train_and_evaluate(config, str(tmp_path))
  assert result["step"] == 2 and result["eval/count"] > 0
