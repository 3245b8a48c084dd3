"""Reads PyTorch checkpoint files into `{name: numpy array}` without torch.

Two formats:
* legacy (torch < 1.6, e.g. torchvision's `mobilenet_v2-b0353104.pth`): five
  pickles in a row (magic number, protocol version, sys info, the object with its
  storages as persistent ids, the list of storage keys), then each storage's
  raw bytes, prefixed by its element count as a little-endian int64;
* zip (torch >= 1.6): `*/data.pkl` with persistent ids naming `*/data/<key>` entries
  that hold the raw little-endian bytes.

Unpickling is restricted to an allow-list: ordered dicts, torch's tensor and
parameter rebuild functions and its storage types. Anything else a file names (for
example `os.system` through `__reduce__`) raises `UnsafeCheckpointError` before it
is looked up, so nothing from the file is ever called except the rebuilds here.
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import struct
import zipfile

import numpy as np

from cnn_lab.errors import InputError, fail

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001

# torch storage type -> numpy dtype (little-endian, as torch writes them)
STORAGE_DTYPES = {
    "DoubleStorage": "<f8", "FloatStorage": "<f4", "HalfStorage": "<f2",
    "BFloat16Storage": "<u2", "LongStorage": "<i8", "IntStorage": "<i4",
    "ShortStorage": "<i2", "CharStorage": "i1", "ByteStorage": "u1", "BoolStorage": "?",
}


class UnsafeCheckpointError(InputError, pickle.UnpicklingError):
  """The file asks the unpickler for something outside the allow-list."""


class _StorageType:
  def __init__(self, name: str):
    self.name, self.dtype = name, np.dtype(STORAGE_DTYPES[name])


class _Storage:
  """A flat buffer, filled once the raw bytes are read."""

  def __init__(self, dtype: np.dtype, numel: int):
    self.dtype, self.numel, self.array = dtype, numel, None


def _rebuild_tensor(storage: _Storage, offset: int, size, stride, *_ignored):
  """A lazily strided view: resolved to a numpy array once storages are loaded."""
  return _Tensor(storage, offset, tuple(size), tuple(stride))


class _Tensor:
  def __init__(self, storage, offset, size, stride):
    self.storage, self.offset, self.size, self.stride = storage, offset, size, stride

  def numpy(self) -> np.ndarray:
    flat = self.storage.array
    if not self.size:
      return flat[self.offset].copy()
    itemsize = flat.dtype.itemsize
    view = np.lib.stride_tricks.as_strided(
        flat[self.offset:], shape=self.size, strides=[s * itemsize for s in self.stride])
    array = np.array(view)  # own the memory, C order
    if self.storage.dtype.name == "uint16":  # bfloat16 bits -> float32
      array = (array.astype(np.uint32) << 16).view(np.float32)
    return array


def _rebuild_parameter(data, requires_grad=None, backward_hooks=None, *_ignored):
  del requires_grad, backward_hooks
  return data


_ALLOWED = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    **{("torch", name): _StorageType(name) for name in STORAGE_DTYPES},
}


class _RestrictedUnpickler(pickle.Unpickler):
  def __init__(self, file, path: str, storages: dict, resolve_storage):
    super().__init__(file)
    self.path, self.storages, self.resolve_storage = path, storages, resolve_storage

  def find_class(self, module: str, name: str):
    if (module, name) not in _ALLOWED:
      raise UnsafeCheckpointError(
          f"checkpoint: expected only tensors, storages and ordered dicts, received a "
          f"reference to {module}.{name} in {self.path}; refusing to load it (nothing "
          "from the file was run)")
    return _ALLOWED[module, name]

  def persistent_load(self, saved_id):
    if not (isinstance(saved_id, tuple) and saved_id and saved_id[0] == "storage"):
      raise UnsafeCheckpointError(f"checkpoint: unexpected persistent id {saved_id!r} in "
                                  f"{self.path}")
    storage_type, key, numel = saved_id[1], str(saved_id[2]), saved_id[4]
    if not isinstance(storage_type, _StorageType):
      raise UnsafeCheckpointError(f"checkpoint: unknown storage type in {self.path}")
    if key not in self.storages:
      self.storages[key] = _Storage(storage_type.dtype, int(numel))
    return self.storages[key]


def _flatten(obj, prefix: str = "") -> dict:
  """Nested dicts of tensors -> {"a.b": array}; other leaves (ints, strings) are dropped."""
  out = {}
  if isinstance(obj, dict):
    for key, value in obj.items():
      out.update(_flatten(value, f"{prefix}{key}."))
  elif isinstance(obj, _Tensor):
    out[prefix[:-1]] = obj.numpy()
  return out


def _read_legacy(f, path: str) -> dict:
  def load():
    return _RestrictedUnpickler(f, path, storages, None).load()

  storages: dict = {}
  if load() != LEGACY_MAGIC:
    raise fail("checkpoint", f"torch's legacy magic number in {path}", "another value")
  if (protocol := load()) != LEGACY_PROTOCOL:
    raise fail("checkpoint", f"protocol version {LEGACY_PROTOCOL} in {path}", protocol)
  load()  # sys info: endianness and type sizes, little-endian everywhere torch runs
  obj = load()
  keys = load()
  for key in keys:
    storage = storages[str(key)]
    (numel,) = struct.unpack("<q", f.read(8))
    data = f.read(numel * storage.dtype.itemsize)
    if len(data) != numel * storage.dtype.itemsize:
      raise fail("checkpoint", f"{numel} values for storage {key} in {path}",
                 "a file that ends early")
    storage.array = np.frombuffer(data, storage.dtype)
  return obj


def _read_zip(path: str) -> dict:
  with zipfile.ZipFile(path) as archive:
    names = archive.namelist()
    pickles = [n for n in names if n.endswith("data.pkl")]
    if len(pickles) != 1:
      raise fail("checkpoint", f"one data.pkl in the zip {path}", len(pickles))
    root = pickles[0][:-len("data.pkl")]
    storages: dict = {}
    obj = _RestrictedUnpickler(io.BytesIO(archive.read(pickles[0])), path, storages,
                               None).load()
    for key, storage in storages.items():
      data = archive.read(f"{root}data/{key}")
      storage.array = np.frombuffer(data, storage.dtype)[:storage.numel]
  return obj


def load_torch_checkpoint(path: str) -> dict[str, np.ndarray]:
  """A torch checkpoint (legacy or zip) -> `{name: array}` (nested dicts flattened with
  dots; a `state_dict` key, as training scripts save it, is unwrapped)."""
  if not os.path.exists(path):
    raise fail("checkpoint", "an existing file", path)
  if zipfile.is_zipfile(path):
    obj = _read_zip(path)
  else:
    with open(path, "rb") as f:
      obj = _read_legacy(f, path)
  if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
    obj = obj["state_dict"]
  return _flatten(obj)
