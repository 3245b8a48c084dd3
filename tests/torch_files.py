"""Torch's two checkpoint formats written without torch, for the reader's tests: fake
`torch` modules give pickle the names torch's files hold."""

import collections
import contextlib
import io
import pickle
import struct
import sys
import types
import zipfile
from unittest import mock

import numpy as np

LEGACY_HEADER = (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True})


class FakeStorage:
  def __init__(self, key, array, numel=None):
    self.key, self.array = key, array
    self.numel = array.size if numel is None else numel  # what the file declares


class FakeTensor:
  def __init__(self, storage, offset, size, stride):
    self.storage, self.offset, self.size, self.stride = storage, offset, size, stride


@contextlib.contextmanager
def fake_torch():
  """-> (torch, torch._utils) modules in `sys.modules` while the context lasts."""
  torch = types.ModuleType("torch")
  utils = types.ModuleType("torch._utils")

  def _rebuild_tensor_v2(*args):  # only its name is pickled
    raise AssertionError

  _rebuild_tensor_v2.__module__, _rebuild_tensor_v2.__qualname__ = "torch._utils", \
      "_rebuild_tensor_v2"
  utils._rebuild_tensor_v2 = _rebuild_tensor_v2
  for name in ("FloatStorage", "LongStorage"):
    setattr(torch, name, type(name, (), {"__module__": "torch"}))
  torch._utils = utils
  with mock.patch.dict(sys.modules, {"torch": torch, "torch._utils": utils}):
    yield torch, utils


def pickle_object(obj, legacy: bool, protocol: int = 2) -> bytes:
  """`obj` pickled as torch.save would (call inside `fake_torch`)."""
  torch, utils = sys.modules["torch"], sys.modules["torch._utils"]

  class Writer(pickle.Pickler):
    def persistent_id(self, o):
      if isinstance(o, FakeStorage):
        kind = torch.FloatStorage if o.array.dtype == np.float32 else torch.LongStorage
        return ("storage", kind, o.key, "cpu", o.numel) + ((None,) if legacy else ())
      return None

    def reducer_override(self, o):
      if isinstance(o, FakeTensor):
        return utils._rebuild_tensor_v2, (o.storage, o.offset, o.size, o.stride, False,
                                          collections.OrderedDict())
      return NotImplemented

  buffer = io.BytesIO()
  Writer(buffer, protocol=protocol).dump(obj)
  return buffer.getvalue()


def legacy_bytes(payload: bytes, storages) -> bytes:
  out = b"".join(pickle.dumps(h, protocol=2) for h in LEGACY_HEADER) + payload
  out += pickle.dumps([s.key for s in storages], protocol=2)
  for s in storages:
    out += struct.pack("<q", s.numel) + s.array.tobytes()
  return out


def zip_bytes(payload: bytes, storages, compression=zipfile.ZIP_STORED) -> bytes:
  buffer = io.BytesIO()
  with zipfile.ZipFile(buffer, "w", compression) as z:
    z.writestr("archive/data.pkl", payload)
    z.writestr("archive/version", "3\n")
    for s in storages:
      z.writestr(f"archive/data/{s.key}", s.array.tobytes())
  return buffer.getvalue()


def checkpoint_bytes(obj, storages, legacy: bool) -> bytes:
  """The file torch.save would write for `obj` (FakeTensors over `storages`)."""
  with fake_torch():
    payload = pickle_object(obj, legacy)
  return legacy_bytes(payload, storages) if legacy else zip_bytes(payload, storages)


def write_checkpoint(path, obj, storages, legacy: bool) -> None:
  with open(path, "wb") as f:
    f.write(checkpoint_bytes(obj, storages, legacy))


def write_state_dict(path, state: dict) -> None:
  """`state` (name -> numpy array) saved as torch.save(model.state_dict()) would: one
  float32 storage per tensor, contiguous, in the zip format."""
  storages, tensors = [], collections.OrderedDict()
  for i, (name, array) in enumerate(state.items()):
    array = np.ascontiguousarray(array, np.float32)
    storage = FakeStorage(str(i), array.reshape(-1))
    strides = tuple(s // array.itemsize for s in array.strides)
    tensors[name] = FakeTensor(storage, 0, array.shape, strides)
    storages.append(storage)
  write_checkpoint(path, tensors, storages, legacy=False)
