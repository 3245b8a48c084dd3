"""Reads PyTorch checkpoint files into `{name: numpy array}` without torch, and
without trusting them.

Two formats:
* legacy (torch < 1.6, e.g. torchvision's `mobilenet_v2-b0353104.pth`): five
  pickles in a row (magic number, protocol version, sys info, the object with its
  storages as persistent ids, the list of storage keys), then each storage's
  raw bytes, prefixed by its element count as a little-endian int64;
* zip (torch >= 1.6): `*/data.pkl` with persistent ids naming `*/data/<key>` entries
  that hold the raw little-endian bytes, stored uncompressed.

The pickles run in `safe_pickle`'s bounded interpreter. A global is looked up in a
read-only allow-list of markers (ordered dicts, torch's tensor and parameter
rebuilds, its storage types): nothing from the file is imported or called, and no
opcode can change the allow-list. Before any byte is read or copied, every storage's
declared element count must equal the bytes present, and every tensor's extent
(offset, sizes, strides) must lie inside its storage; the arrays returned may cost at
most `Limits.expansion` times the storage bytes. Every refusal, whatever the damage,
is one `UnsafeCheckpointError` naming the file and the reason (docs/security.md).
"""

from __future__ import annotations

import dataclasses
import math
import os
import pickle
import struct
import types
import zipfile
import zlib

import numpy as np

from cnn_lab.errors import InputError, fail
from cnn_lab.pretrained.safe_pickle import Budget, Limits, Refused, flatten, load

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001

# torch storage type -> numpy dtype (little-endian, as torch writes them)
STORAGE_DTYPES = {
    "DoubleStorage": "<f8", "FloatStorage": "<f4", "HalfStorage": "<f2",
    "BFloat16Storage": "<u2", "LongStorage": "<i8", "IntStorage": "<i4",
    "ShortStorage": "<i2", "CharStorage": "i1", "ByteStorage": "u1", "BoolStorage": "?",
}




class UnsafeCheckpointError(InputError, pickle.UnpicklingError):
  """A checkpoint refused: malformed, over a bound, or asking for something outside
  the allow-list. Nothing from the file was run."""


@dataclasses.dataclass(frozen=True)
class _Callable:
  kind: str  # "ordered_dict", "rebuild_tensor", "rebuild_parameter"


@dataclasses.dataclass(frozen=True)
class _StorageType:
  name: str

  @property
  def dtype(self) -> np.dtype:
    return np.dtype(STORAGE_DTYPES[self.name])


class _StateDict(dict):
  """An OrderedDict from the file (insertion order kept by dict); BUILD's state on
  it (torch's `_metadata`) is dropped."""


@dataclasses.dataclass
class _Storage:
  """A flat buffer of `numel` values, given its bytes once they are found."""
  key: str
  dtype: np.dtype
  numel: int
  array: np.ndarray | None = None


@dataclasses.dataclass
class _Tensor:
  storage: _Storage
  offset: int
  size: tuple
  stride: tuple

  @property
  def nbytes(self) -> int:
    return math.prod(self.size) * self.storage.dtype.itemsize

  def numpy(self) -> np.ndarray:
    """A copy (own memory, C order) of the view; its extent was checked on creation."""
    flat = self.storage.array
    itemsize = flat.dtype.itemsize
    view = np.lib.stride_tricks.as_strided(
        flat[self.offset:], shape=self.size, strides=[s * itemsize for s in self.stride])
    array = np.array(view)
    if self.storage.dtype == np.dtype("<u2"):  # bfloat16 bits -> float32
      array = (array.astype(np.uint32) << 16).view(np.float32)
    return array


# Read-only: no opcode can reach it (BUILD is only ever applied to a `_StateDict`).
_ALLOWED = types.MappingProxyType({
    ("collections", "OrderedDict"): _Callable("ordered_dict"),
    ("torch._utils", "_rebuild_tensor"): _Callable("rebuild_tensor"),
    ("torch._utils", "_rebuild_tensor_v2"): _Callable("rebuild_tensor"),
    ("torch._utils", "_rebuild_parameter"): _Callable("rebuild_parameter"),
    **{("torch", name): _StorageType(name) for name in STORAGE_DTYPES},
})


def _is_int(value) -> bool:
  return isinstance(value, int) and not isinstance(value, bool)


def _tensor(storage, offset, size, stride) -> _Tensor:
  """A tensor whose every element lies inside its storage, or `Refused`."""
  if not (isinstance(storage, _Storage) and _is_int(offset) and isinstance(size, tuple)
          and isinstance(stride, tuple) and len(size) == len(stride) <= 32
          and all(map(_is_int, size + stride))):
    raise Refused("a tensor whose storage, offset, size or stride is malformed")
  if offset < 0 or min(size + stride, default=0) < 0:
    raise Refused(f"a tensor with a negative offset, size or stride ({offset}, {size}, "
                  f"{stride})")
  if math.prod(size) and offset + sum((n - 1) * s for n, s in zip(size, stride)) >= \
      storage.numel:
    raise Refused(f"a tensor of size {size}, stride {stride}, offset {offset} that reaches "
                  f"outside its storage of {storage.numel} elements")
  return _Tensor(storage, offset, size, stride)


class _TorchHooks:
  """What the allow-list means: `safe_pickle.Hooks` for torch's checkpoints."""

  def __init__(self, limits: Limits):
    self.limits, self.storages = limits, {}

  def global_(self, module: str, name: str):
    if (module, name) not in _ALLOWED:
      raise Refused(f"a reference to {module}.{name}, outside the allow-list of tensors, "
                    "storages and ordered dicts (nothing from the file was run)")
    return _ALLOWED[module, name]

  def persistent(self, pid):
    if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"
            and isinstance(pid[1], _StorageType) and isinstance(pid[2], (str, int))
            and _is_int(pid[4]) and 0 <= pid[4]):
      raise Refused(f"an unexpected persistent id {str(pid)[:80]}")
    kind, key, numel = pid[1], str(pid[2]), pid[4]
    if numel * kind.dtype.itemsize > self.limits.file_bytes:
      raise Refused(f"storage {key} declares {numel} elements, more than Limits.file_bytes")
    storage = self.storages.setdefault(key, _Storage(key, kind.dtype, numel))
    if (storage.dtype, storage.numel) != (kind.dtype, numel):
      raise Refused(f"storage {key} declared twice, differently")
    return storage

  def reduce(self, func, args: tuple):
    kind = getattr(func, "kind", None)
    if kind == "ordered_dict" and args in ((), ([],)):
      return _StateDict()
    if kind == "rebuild_tensor" and len(args) >= 4:
      return _tensor(*args[:4])
    if kind == "rebuild_parameter" and args and isinstance(args[0], _Tensor):
      return args[0]
    raise Refused(f"a call of {getattr(func, 'kind', type(func).__name__)} with "
                  f"{len(args)} arguments that torch's checkpoints never make")

  def build(self, obj, state) -> None:
    if not isinstance(obj, _StateDict):
      raise Refused(f"BUILD on a {type(obj).__name__} (only ordered dicts take it)")


def _read_legacy(data: memoryview, hooks: _TorchHooks, budget: Budget):
  pos = 0

  def next_pickle():
    nonlocal pos
    value, pos = load(data, pos, hooks, budget)
    return value

  if not len(data):
    raise Refused("an empty file")
  try:
    magic = next_pickle()
  except Refused as e:
    raise Refused(f"not a torch checkpoint (neither a zip nor a pickle: {e})") from None
  if magic != LEGACY_MAGIC:
    raise Refused("not a torch checkpoint: torch's legacy magic number is missing")
  if (protocol := next_pickle()) != LEGACY_PROTOCOL:
    raise Refused(f"protocol version {str(protocol)[:20]}, not {LEGACY_PROTOCOL}")
  next_pickle()  # sys info: endianness and type sizes, little-endian everywhere torch runs
  obj = next_pickle()
  keys = next_pickle()
  if not isinstance(keys, list):
    raise Refused("the storage key list is not a list")
  for key in keys:
    storage = hooks.storages.get(str(key))
    if storage is None or storage.array is not None:
      raise Refused(f"storage key {str(key)[:40]} is unknown or repeated")
    if pos + 8 > len(data):
      raise Refused(f"the file ends before storage {key}")
    if (count := struct.unpack_from("<q", data, pos)[0]) != storage.numel:
      raise Refused(f"storage {key} declares {storage.numel} elements, its data {count}")
    end = pos + 8 + storage.numel * storage.dtype.itemsize
    if end > len(data):
      raise Refused(f"storage {key} declares {storage.numel} elements; the file ends "
                    f"after {len(data) - pos - 8} bytes of them")
    storage.array = np.frombuffer(data[pos + 8:end], storage.dtype)
    pos = end
  return obj


def _member(archive: zipfile.ZipFile, name: str, limit: int) -> bytes:
  """A stored (uncompressed, as torch writes) member of at most `limit` bytes."""
  try:
    info = archive.getinfo(name)
  except KeyError:
    raise Refused(f"the zip has no {name}") from None
  if info.compress_type != zipfile.ZIP_STORED:
    raise Refused(f"{name} is compressed; torch stores members as they are, and a "
                  "compressed one could be a zip bomb")
  if info.file_size > limit:
    raise Refused(f"{name} holds {info.file_size} bytes, expected at most {limit}")
  return archive.read(info)


def _read_zip(path: str, hooks: _TorchHooks, budget: Budget):
  with zipfile.ZipFile(path) as archive:
    pickles = [n for n in archive.namelist() if n.endswith("data.pkl")]
    if len(pickles) != 1:
      raise Refused(f"{len(pickles)} data.pkl in the zip, expected one")
    root = pickles[0][:-len("data.pkl")]
    data = _member(archive, pickles[0], hooks.limits.pickle_bytes)
    obj, _ = load(memoryview(data), 0, hooks, budget)
    for key, storage in hooks.storages.items():
      name = f"{root}data/{key}"
      info = archive.NameToInfo.get(name)
      if info is not None and info.file_size != storage.numel * storage.dtype.itemsize:
        raise Refused(f"storage {key} declares {storage.numel} elements, its data "
                      f"{info.file_size} bytes")
      storage.array = np.frombuffer(_member(archive, name, hooks.limits.file_bytes),
                                    storage.dtype)
  return obj


def _read(path: str, limits: Limits) -> dict[str, np.ndarray]:
  hooks, budget = _TorchHooks(limits), Budget(limits.items)
  if os.path.getsize(path) > limits.file_bytes:
    raise Refused(f"{os.path.getsize(path)} bytes, more than Limits.file_bytes")
  if zipfile.is_zipfile(path):
    obj = _read_zip(path, hooks, budget)
  else:
    with open(path, "rb") as f:
      obj = _read_legacy(memoryview(f.read()), hooks, budget)
  if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
    obj = obj["state_dict"]
  tensors = flatten(obj, _Tensor, limits, budget)
  if any(t.storage.array is None for t in tensors.values()):
    raise Refused("a tensor whose storage has no bytes in the file")
  present = sum(s.array.nbytes for s in hooks.storages.values() if s.array is not None)
  wanted = sum(t.nbytes for t in tensors.values())
  if wanted > limits.expansion * present + 2**20:
    raise Refused(f"its tensors would take {wanted} bytes from {present} bytes of "
                  f"storage (Limits.expansion={limits.expansion})")
  return {name: tensor.numpy() for name, tensor in tensors.items()}


def load_torch_checkpoint(path: str, limits: Limits = Limits()) -> dict[str, np.ndarray]:
  """A torch checkpoint (legacy or zip) -> `{name: array}` (nested dicts flattened with
  dots; a `state_dict` key, as training scripts save it, is unwrapped). Refuses, with
  `UnsafeCheckpointError`, anything malformed, over `limits`, or outside the
  allow-list (see the module docstring)."""
  if not os.path.isfile(path):
    raise fail("checkpoint", "an existing file", path)
  try:
    return _read(path, limits)
  except Refused as e:
    raise UnsafeCheckpointError(f"checkpoint: refusing {path}: {e}") from None
  except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as e:
    raise UnsafeCheckpointError(f"checkpoint: refusing {path}: a damaged file "
                                f"({type(e).__name__}: {e})") from None
