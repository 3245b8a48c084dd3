"""Workdir paths that may be local or on a bucket (`gs://...`, `s3://...`).

Local paths are made absolute; URLs go through `etils.epath` (which orbax and TFDS
use too; `gs://` needs `gcsfs`, installed on Cloud TPU VMs with `pip install gcsfs`).
Small files are written whole, to a temporary name then renamed, so a reader never
sees half a file.
"""

from __future__ import annotations

import os

from etils import epath


def is_url(path: str) -> bool:
  return "://" in str(path)


def resolve(path: str) -> str:
  """`~/run` -> `/home/me/run`; `gs://bucket/run` unchanged."""
  return str(path) if is_url(path) else os.path.abspath(os.path.expanduser(str(path)))


def join(*parts: str) -> str:
  return os.path.join(*map(str, parts))  # "gs://b/run" + "x" -> "gs://b/run/x"


def exists(path: str) -> bool:
  return epath.Path(path).exists()


def is_dir(path: str) -> bool:
  return epath.Path(path).is_dir()


def list_dir(path: str) -> list[str]:
  return sorted(p.name for p in epath.Path(path).iterdir())


def read_text(path: str) -> str:
  return epath.Path(path).read_text()


def read_bytes(path: str) -> bytes:
  return epath.Path(path).read_bytes()


def write_atomic(path: str, data: str | bytes) -> str:
  """Writes `data` to `path` through a temporary file in the same folder."""
  target = epath.Path(path)
  tmp = target.parent / f".{target.name}.tmp.{os.getpid()}"
  try:
    if isinstance(data, bytes):
      tmp.write_bytes(data)
    else:
      tmp.write_text(data)
    tmp.replace(target)
  except BaseException:  # e.g. a full disk: leave no half-written temporary behind
    try:
      tmp.unlink()
    except OSError:
      pass
    raise
  return str(path)


def remove(path: str) -> None:
  epath.Path(path).unlink()


def make_dirs(path: str) -> None:
  epath.Path(path).mkdir(parents=True, exist_ok=True)


def rename(source: str, target: str) -> None:
  epath.Path(source).rename(target)
