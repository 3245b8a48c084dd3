"""Hostile checkpoint files: each crafted file is refused in one line naming the reason,
costs under 100 MB, runs nothing and reads nothing from outside itself; fuzzed files
load correctly or are refused, never crash (docs/security.md)."""

import collections
import pickle
import re
import tracemalloc
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cnn_lab.pretrained import UnsafeCheckpointError, load_torch_checkpoint
from tests.torch_files import (FakeStorage, FakeTensor, checkpoint_bytes, fake_torch,
                               pickle_object, zip_bytes)

MEMORY_BOUND = 100 * 2**20


def _load(path):
  """(result or the error, peak bytes Python allocated meanwhile, numpy's included)."""
  tracemalloc.start()
  try:
    result = load_torch_checkpoint(str(path))
  except Exception as e:  # noqa: BLE001  the caller checks which
    result = e
  finally:
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
  return result, peak


def _refused(path, reason: str) -> None:
  result, peak = _load(path)
  assert isinstance(result, UnsafeCheckpointError), result
  assert str(path) in str(result) and reason in str(result), str(result)
  assert "\n" not in str(result)
  assert peak < MEMORY_BOUND, peak


def _one_tensor(offset, size, stride, numel=None, values=4):
  storage = FakeStorage("0", np.arange(values, dtype=np.float32), numel)
  return {"w": FakeTensor(storage, offset, size, stride)}, [storage]


TENSORS = {  # name -> (offset, size, stride, declared numel), over 4 float32 values
    "stride_2**38": (0, (2, 2), (2**38, 1), None),
    "negative_stride": (3, (2, 2), (-2**40, 1), None),
    "size_past_storage": (0, (4096,), (1,), None),
    "negative_offset": (-2, (2,), (1,), None),
    "declared_2**20_holding_16_bytes": (0, (4,), (1,), 2**20),
    "stride0_20000x20000": (0, (20000, 20000), (0, 0), None),
}
REASONS = {"stride_2**38": "reaches outside its storage",
           "negative_stride": "negative", "size_past_storage": "reaches outside",
           "negative_offset": "negative",
           "declared_2**20_holding_16_bytes": "storage 0 declares 1048576 elements",
           "stride0_20000x20000": "would take 1600000000 bytes"}


@pytest.mark.parametrize("legacy", [True, False], ids=["legacy", "zip"])
@pytest.mark.parametrize("name", sorted(TENSORS))
def test_tensors_outside_their_storage_are_refused(name, legacy, tmp_path):
  offset, size, stride, numel = TENSORS[name]
  obj, storages = _one_tensor(offset, size, stride, numel)
  path = tmp_path / "w.pth"
  path.write_bytes(checkpoint_bytes(obj, storages, legacy))
  _refused(path, REASONS[name])


def _zip_payload(path, payload: bytes, storages=(), compression=zipfile.ZIP_STORED):
  path.write_bytes(zip_bytes(payload, storages, compression))


def test_a_memo_index_of_2_to_26_costs_nothing(tmp_path):
  path = tmp_path / "memo.pth"
  _zip_payload(path, b"\x80\x02}r\x00\x00\x00\x04.")  # EMPTY_DICT, LONG_BINPUT 2**26
  result, peak = _load(path)
  assert result == {} and peak < MEMORY_BOUND


def test_zip_bombs_are_refused_unread(tmp_path):
  path = tmp_path / "bomb.pth"
  _zip_payload(path, b"\x80\x02}." + b"\x00" * 2**24, compression=zipfile.ZIP_DEFLATED)
  assert path.stat().st_size < 2**16
  _refused(path, "compressed")
  obj, storages = _one_tensor(0, (4,), (1,))
  with fake_torch():
    payload = pickle_object(obj, legacy=False)
  storages[0].array = np.zeros(2**22, np.float32)
  storages[0].numel = 2**22
  _zip_payload(path, payload, storages, compression=zipfile.ZIP_DEFLATED)
  _refused(path, "compressed")


def test_a_dict_dag_doubling_per_level_is_refused(tmp_path):
  obj, storages = _one_tensor(0, (4,), (1,))
  for _ in range(24):  # 800 bytes, 2**24 paths to the one tensor
    obj = {"a": obj, "b": obj}
  path = tmp_path / "dag.pth"
  path.write_bytes(checkpoint_bytes(obj, storages, legacy=False))
  assert path.stat().st_size < 2000
  _refused(path, "Limits.items")


def test_self_reference_and_deep_nesting_are_refused(tmp_path):
  d: dict = {}
  d["self"] = d
  path = tmp_path / "loop.pth"
  _zip_payload(path, pickle.dumps(d, protocol=2))
  _refused(path, "contains itself")
  deep = b"\x80\x04" + b"}\x8c\x01k" * 5000 + b"}" + b"s" * 5000 + b"."
  _zip_payload(path, deep)
  _refused(path, "nested deeper")


def test_build_cannot_poison_the_allow_list(tmp_path):
  path = tmp_path / "build.pth"
  payload = b"\x80\x02ctorch\nFloatStorage\n}X\x05\x00\x00\x00dtypeX\x03\x00\x00\x00boms\x85b."
  _zip_payload(path, payload)
  _refused(path, "BUILD on a _StorageType")
  good = tmp_path / "good.pth"
  obj, storages = _one_tensor(0, (4,), (1,))
  good.write_bytes(checkpoint_bytes(obj, storages, legacy=False))
  np.testing.assert_array_equal(load_torch_checkpoint(str(good))["w"], np.arange(4))


@pytest.mark.parametrize("content, reason", [
    (b"", "an empty file"), (b"hello world\n", "not a torch checkpoint"),
    (b"\x80\x02}q\x00(X", "runs past the end"),
    (pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2), "runs past the end"),
], ids=["empty", "text", "truncated", "magic_only"])
def test_empty_text_and_truncated_files_are_refused_in_one_line(content, reason, tmp_path):
  path = tmp_path / "x.pth"
  path.write_bytes(content)
  _refused(path, reason)


def test_a_storage_named_but_absent_and_code_in_the_magic_pickle(tmp_path):
  obj, storages = _one_tensor(0, (4,), (1,))
  with fake_torch():
    payload = pickle_object(obj, legacy=False)
  path = tmp_path / "nodata.pth"
  _zip_payload(path, payload)  # no archive/data/0
  _refused(path, "has no archive/data/0")

  class Exploit:
    def __reduce__(self):
      return (eval, ("1+1",))

  path.write_bytes(pickle.dumps(Exploit(), protocol=2))
  _refused(path, "builtin__.eval, outside the allow-list")


# ---------------------------------------------------------------- fuzzing


def _seed_files():
  shared = FakeStorage("0", np.arange(30, dtype=np.float32))
  count = FakeStorage("1", np.array([7], np.int64))
  obj = {"state_dict": collections.OrderedDict([
      ("conv.weight", FakeTensor(shared, 0, (2, 3, 2), (6, 2, 1))),
      ("transposed", FakeTensor(shared, 12, (3, 2), (1, 3))),
      ("count", FakeTensor(count, 0, (), ())),
  ]), "epoch": 3}
  with fake_torch():
    payload = pickle_object(obj, legacy=False)
  return {"legacy": checkpoint_bytes(obj, [shared, count], True),
          "zip": checkpoint_bytes(obj, [shared, count], False),
          "payload": payload, "storages": [shared, count]}


SEEDS = _seed_files()
EDITS = st.lists(st.tuples(st.sampled_from(["set", "insert", "delete", "truncate"]),
                           st.integers(0, 2**16), st.integers(0, 255)), min_size=1, max_size=4)


def _mutate(data: bytes, edits) -> bytes:
  data = bytearray(data)
  for kind, where, value in edits:
    i = where % (len(data) + 1)
    if kind == "set" and i < len(data):
      data[i] = value
    elif kind == "insert":
      data[i:i] = bytes([value])
    elif kind == "delete":
      del data[i:i + 1 + value % 8]
    elif kind == "truncate":
      del data[i:]
  return bytes(data)


def _clean_refusal_or_load(path) -> None:
  result, peak = _load(path)
  assert peak < MEMORY_BOUND, peak
  if isinstance(result, Exception):
    assert isinstance(result, UnsafeCheckpointError), repr(result)
    assert "\n" not in str(result)
  else:
    assert all(isinstance(v, np.ndarray) for v in result.values())


@given(target=st.sampled_from(["legacy", "zip", "payload"]), edits=EDITS)
def test_mutated_checkpoints_load_or_are_refused_never_crash(target, edits, tmp_path_factory):
  path = tmp_path_factory.mktemp("fuzz") / "f.pth"
  if target == "payload":  # the pickle itself, in a zip whose checksums hold
    path.write_bytes(zip_bytes(_mutate(SEEDS["payload"], edits), SEEDS["storages"]))
  else:
    path.write_bytes(_mutate(SEEDS[target], edits))
  _clean_refusal_or_load(path)


@given(offset=st.integers(-3, 40), size=st.lists(st.integers(-1, 7), max_size=3),
       data=st.data(), legacy=st.booleans())
def test_any_tensor_extent_reads_exactly_its_elements_or_is_refused(offset, size, data,
                                                                    legacy, tmp_path_factory):
  stride = data.draw(st.lists(st.integers(-2, 9), min_size=len(size), max_size=len(size)))
  values = np.arange(24, dtype=np.float32) * 1.5
  storage = FakeStorage("0", values)
  obj = {"w": FakeTensor(storage, offset, tuple(size), tuple(stride))}
  path = tmp_path_factory.mktemp("extent") / "e.pth"
  path.write_bytes(checkpoint_bytes(obj, [storage], legacy))
  result, _ = _load(path)
  inside = offset >= 0 and min(size + stride, default=0) >= 0 and (
      0 in size or offset + sum((n - 1) * s for n, s in zip(size, stride)) < values.size)
  if not inside:
    assert isinstance(result, UnsafeCheckpointError), result
    return
  expected = np.empty(size, np.float32)
  for index in np.ndindex(*size):
    expected[index] = values[offset + sum(i * s for i, s in zip(index, stride))]
  np.testing.assert_array_equal(result["w"], expected)


# ---------------------------------------------------------------- tool inputs


def test_16_bit_and_32_bit_gray_images_are_scaled_not_clipped(tmp_path):
  from PIL import Image

  from cnn_lab.data.images import load_image
  ramp = (np.arange(1024).reshape(32, 32) * 64).astype(np.uint16)
  Image.fromarray(ramp).save(tmp_path / "g16.png")
  image = load_image(str(tmp_path / "g16.png"))
  assert image.dtype == np.uint8 and image.shape == (32, 32, 3)
  np.testing.assert_array_equal(image[..., 0], np.round(ramp / 65535 * 255))
  Image.fromarray(ramp.astype(np.int32)).save(tmp_path / "g32.tif")
  np.testing.assert_array_equal(load_image(str(tmp_path / "g32.tif"))[..., 1],
                                np.round(ramp / 65535 * 255))


def test_a_decompression_bomb_is_one_line(tmp_path, monkeypatch):
  from PIL import Image

  from cnn_lab.data.images import load_image
  from cnn_lab.errors import InputError
  Image.fromarray(np.zeros((40, 40), np.uint8)).save(tmp_path / "big.png")
  monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 1600 pixels: over the bound
  with pytest.raises(InputError, match=r"image: expected an image of at most 1000 pixels"):
    load_image(str(tmp_path / "big.png"))


def _database(path, **arrays):
  np.savez(path, **arrays)
  return str(path)


@pytest.mark.parametrize("arrays, reason", [
    ({"names": np.array(["a", "b"]), "embeddings": np.zeros((3, 8))}, "one name per embedding"),
    ({"names": np.array(["a"])}, "names.npy and embeddings.npy"),
    ({"names": np.array(["a"]), "embeddings": np.zeros((1, 8)), "x": np.zeros(1)},
     "names.npy and embeddings.npy"),
    ({"names": np.array(["a"]), "embeddings": np.full((1, 8), np.nan)}, "finite embeddings"),
    ({"names": np.array([1.0]), "embeddings": np.zeros((1, 8))}, "names [G] as text"),
    ({"names": np.array(["a"]), "embeddings": np.zeros((1, 8), np.int64)}, "embeddings [G, 8]"),
], ids=["mismatched", "missing", "extra", "nan", "numeric_names", "integer_embeddings"])
def test_face_databases_are_validated_in_one_line(arrays, reason, tmp_path):
  from cnn_lab.errors import InputError
  from cnn_lab.eval.verification import load_database
  with pytest.raises(InputError, match=re.escape(reason)) as refused:
    load_database(_database(tmp_path / "db.npz", **arrays), 8)
  assert "\n" not in str(refused.value)


def test_a_face_database_is_bounded_before_it_is_read(tmp_path):
  from cnn_lab.errors import InputError
  from cnn_lab.eval.verification import load_database
  path = tmp_path / "bomb.npz"
  np.savez_compressed(path, names=np.array(["a"] * 4096), embeddings=np.zeros((4096, 128)))
  assert path.stat().st_size < 2**16  # 4 MB of zeros compressed
  tracemalloc.start()
  with pytest.raises(InputError, match=r"at most 1048576 bytes once loaded"):
    load_database(str(path), 128, max_bytes=2**20)
  assert tracemalloc.get_traced_memory()[1] < 2**20
  tracemalloc.stop()
  np.save(tmp_path / "db.npy", np.zeros((1, 128)))
  with pytest.raises(InputError, match="not an .npz archive"):
    load_database(str(tmp_path / "db.npy"), 128)


def test_identification_refuses_a_threshold_that_is_not_finite_and_chunks_the_gallery():
  from cnn_lab.errors import InputError
  from cnn_lab.eval.verification import identify, squared_distances
  rng = np.random.default_rng(0)
  gallery, queries = rng.normal(size=(5000, 64)), rng.normal(size=(300, 64))
  with pytest.raises(InputError, match="threshold: expected a finite distance"):
    identify(queries, gallery, np.arange(5000), float("nan"))
  found, best = identify(queries, gallery, np.arange(5000), 1e9)
  d = squared_distances(queries, gallery)  # all at once: what the chunks must equal
  np.testing.assert_array_equal(found, d.argmin(1))
  np.testing.assert_allclose(best, d.min(1))


@pytest.fixture(scope="module")
def real_checkpoint():
  """torchvision's MobileNetV2 file (legacy format), fetched once like the weights tests."""
  from cnn_lab.pretrained.weights import weights_path
  with open(weights_path("mobilenet_v2"), "rb") as f:
    return f.read()


@settings(max_examples=10, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edits=EDITS)
def test_a_mutated_real_checkpoint_loads_or_is_refused(real_checkpoint, edits,
                                                       tmp_path_factory):
  """Edits in its first 64 KiB: the five pickles and the first storages."""
  path = tmp_path_factory.mktemp("real") / "m.pth"
  head = _mutate(real_checkpoint[:2**16], edits)
  path.write_bytes(head + real_checkpoint[2**16:])
  _clean_refusal_or_load(path)
