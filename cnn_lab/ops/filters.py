"""Hand-made edge detectors, the course's first convolution example.

The 3x3 kernels respond to a bright-to-dark transition from left to right
("vertical") or from top to bottom ("horizontal"); a 6x6 image whose left half
is 10 and right half 0 gives 30 in the two middle columns with `vertical`.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from cnn_lab.errors import fail
from cnn_lab.ops.conv import depthwise_conv

_VERTICAL = {
    "plain": np.array([[1, 0, -1], [1, 0, -1], [1, 0, -1]], np.float32),
    "sobel": np.array([[1, 0, -1], [2, 0, -2], [1, 0, -1]], np.float32),
    "scharr": np.array([[3, 0, -3], [10, 0, -10], [3, 0, -3]], np.float32),
}
FILTERS = tuple(_VERTICAL)
ORIENTATIONS = ("vertical", "horizontal")


def edge_filter(name: str = "plain", orientation: str = "vertical") -> np.ndarray:
  """The 3x3 kernel `[3, 3]` of a named edge detector ("plain", "sobel", "scharr")."""
  if name not in _VERTICAL:
    raise fail("name", f"one of {FILTERS}", name)
  if orientation not in ORIENTATIONS:
    raise fail("orientation", f"one of {ORIENTATIONS}", orientation)
  k = _VERTICAL[name]
  return k.copy() if orientation == "vertical" else k.T.copy()


def detect_edges(images, name: str = "plain", orientation: str = "vertical", *,
                 padding="VALID", impl: str = "xla"):
  """Applies an edge detector to every channel of `images: [N, H, W, C]` (or `[H, W]`).

  Returns `[N, H', W', C]` (or `[H', W']`), the response of each channel
  (magnitude of both orientations when orientation="magnitude").
  """
  if orientation not in (*ORIENTATIONS, "magnitude"):
    raise fail("orientation", f"one of {(*ORIENTATIONS, 'magnitude')}", orientation)
  x = jnp.asarray(images, jnp.float32)
  squeeze = x.ndim == 2
  if squeeze:
    x = x[None, :, :, None]
  if x.ndim != 4:
    raise fail("images.ndim", "2 ([H, W]) or 4 ([N, H, W, C])", x.ndim)

  def response(o):
    k = jnp.asarray(edge_filter(name, o))
    w = jnp.broadcast_to(k[:, :, None, None], (3, 3, x.shape[-1], 1))
    return depthwise_conv(x, w, padding=padding, impl=impl)

  if orientation == "magnitude":
    y = jnp.sqrt(response("vertical") ** 2 + response("horizontal") ** 2)
  else:
    y = response(orientation)
  return y[0, :, :, 0] if squeeze else y


__all__ = ["edge_filter", "detect_edges", "FILTERS"]
