"""Detection models: the course's localizer, its sliding-window network, and YOLO.

* `Localizer`: a small ConvNet whose output is the course's
  `[pc, bx, by, bh, bw, c1..cK]` (box centre and size as fractions of the image),
  followed by `2L` landmark coordinates `(x1, y1, ..., xL, yL)` when `num_landmarks > 0`.
  Output `[N, 5 + K + 2L]`, raw: see `cnn_lab.detection.localization` for the loss.
* `SlidingWindowNet`: the lecture's 14x14x3 window classifier (5x5 conv 16, 2x2 max
  pool, FC 400, FC 400, FC K) and `to_convolutional()`, which re-expresses the dense
  layers as 5x5 and 1x1 convolutions from the same weights, so one pass over a
  larger image classifies every 14x14 window at stride 2 (16x16 -> 2x2, 28x28 -> 8x8).
* `YOLO`: a Darknet-style backbone (3x3 conv-BN-leaky ReLU, 2x2 max pools) to a
  stride-8 grid, then a 1x1 conv to `B * (5 + K)` channels: output `[N, S, S, B, 5 + K]`
  of raw `(t_x, t_y, t_w, t_h, t_o, class logits)`; see `cnn_lab.detection.yolo`.
"""

from __future__ import annotations

from flax import nnx

from cnn_lab import nn, ops
from cnn_lab.models.common import check_input_size
from cnn_lab.ops._checks import fail


class _ConvStack(nnx.Module):
  """3x3 conv-BN-act layers; an "M" entry is a 2x2 max pool; (c, k) a k x k conv."""

  def __init__(self, in_channels: int, layout, *, act: str, impl: str, dtype=None,
               rngs: nnx.Rngs):
    layers, c = [], in_channels
    for entry in layout:
      if entry == "M":
        layers.append(nn.MaxPool(2))
        continue
      out, k = entry if isinstance(entry, tuple) else (entry, 3)
      layers.append(nn.ConvBNAct(c, out, k, act=act, impl=impl, dtype=dtype, rngs=rngs))
      c = out
    self.out_channels = c
    self.layers = nnx.List(layers)

  def __call__(self, x, *, train: bool = False):
    for layer in self.layers:
      x = layer(x) if isinstance(layer, nn.MaxPool) else layer(x, train=train)
    return x


class Localizer(nnx.Module):
  """Classification with localization (and landmarks): `[N, S, S, C]` -> `[N, 5 + K + 2L]`."""

  def __init__(self, *, num_classes: int = 8, num_landmarks: int = 0, in_channels: int = 3,
               input_size: int = 64, width: int = 32, impl: str = "xla", dtype=None,
               rngs: nnx.Rngs):
    check_input_size(input_size, 16, "localizer")
    w = width
    self.features = _ConvStack(in_channels, [w, "M", 2 * w, "M", 4 * w, "M", 8 * w, "M",
                                             8 * w], act="relu", impl=impl, dtype=dtype,
                               rngs=rngs)
    self.hidden = nn.Dense(8 * w, 256, dtype=dtype, rngs=rngs)
    self.head = nn.Dense(256, 5 + num_classes + 2 * num_landmarks, dtype=dtype, rngs=rngs)
    self.num_classes, self.num_landmarks = num_classes, num_landmarks

  def __call__(self, x, *, train: bool = False, rngs=None):
    del rngs
    h = ops.global_avg_pool(self.features(x, train=train))
    return self.head(nnx.relu(self.hidden(h)))


class SlidingWindowNet(nnx.Module):
  """The lecture's 14x14x3 window classifier: `[N, 14, 14, 3]` -> logits `[N, K]`."""

  def __init__(self, *, num_classes: int = 4, in_channels: int = 3, input_size: int = 14,
               impl: str = "xla", rngs: nnx.Rngs):
    if input_size != 14:
      raise fail("input_size", "14 (the window; use to_convolutional() for larger images)",
                 input_size)
    self.conv = nn.Conv(in_channels, 16, 5, padding="VALID", impl=impl, rngs=rngs)
    self.pool = nn.MaxPool(2)
    self.fc1 = nn.Dense(5 * 5 * 16, 400, rngs=rngs)
    self.fc2 = nn.Dense(400, 400, rngs=rngs)
    self.fc3 = nn.Dense(400, num_classes, rngs=rngs)
    self.num_classes, self.in_channels, self.impl = num_classes, in_channels, impl

  def __call__(self, x, *, train: bool = False, rngs=None):
    del train, rngs
    h = nn.flatten(self.pool(nnx.relu(self.conv(x))))  # [N, 5 * 5 * 16], HWC order
    return self.fc3(nnx.relu(self.fc2(nnx.relu(self.fc1(h)))))

  def to_convolutional(self) -> "ConvSlidingWindowNet":
    """The same classifier as a fully convolutional network, sharing these weights' values."""
    return ConvSlidingWindowNet(self)


class ConvSlidingWindowNet(nnx.Module):
  """`SlidingWindowNet` with FC layers as convolutions: `[N, H, W, 3]` ->
  `[N, (H - 14) // 2 + 1, (W - 14) // 2 + 1, K]`, one logit vector per window at stride 2."""

  def __init__(self, net: SlidingWindowNet):
    rngs = nnx.Rngs(0)  # initial values are overwritten below
    k = net.num_classes
    self.conv = nn.Conv(net.in_channels, 16, 5, padding="VALID", impl=net.impl, rngs=rngs)
    self.pool = nn.MaxPool(2)
    self.fc1 = nn.Conv(16, 400, 5, padding="VALID", impl=net.impl, rngs=rngs)
    self.fc2 = nn.Conv(400, 400, 1, impl=net.impl, rngs=rngs)
    self.fc3 = nn.Conv(400, k, 1, impl=net.impl, rngs=rngs)
    self.conv.kernel[...], self.conv.bias[...] = net.conv.kernel[...], net.conv.bias[...]
    # A dense layer on the flattened (h, w, c) window is a conv whose kernel is the
    # dense kernel reshaped to [h, w, c, out].
    for conv, dense, shape in ((self.fc1, net.fc1, (5, 5, 16)), (self.fc2, net.fc2, (1, 1, 400)),
                               (self.fc3, net.fc3, (1, 1, 400))):
      conv.kernel[...] = dense.kernel[...].reshape(*shape, -1)
      conv.bias[...] = dense.bias[...]

  def __call__(self, x, *, train: bool = False, rngs=None):
    del train, rngs
    h = self.pool(nnx.relu(self.conv(x)))
    return self.fc3(nnx.relu(self.fc2(nnx.relu(self.fc1(h)))))


YOLO_BACKBONES = {
    # Darknet-style, stride 8: three halvings, then context at the grid's resolution.
    "darknet_tiny": [16, "M", 32, "M", 64, "M", 128, (64, 1), 128, 256],
    "darknet_small": [32, "M", 64, "M", 128, (64, 1), 128, "M", 256, (128, 1), 256, 512],
}


class YOLO(nnx.Module):
  """`[N, H, W, C]` -> raw predictions `[N, H/8, W/8, B, 5 + K]` (YOLOv2's head)."""

  def __init__(self, *, num_classes: int = 8, num_anchors: int = 5, in_channels: int = 3,
               input_size: int = 64, backbone: str = "darknet_tiny", impl: str = "xla",
               dtype=None, rngs: nnx.Rngs):
    check_input_size(input_size, 8, "yolo")
    if input_size % 8:
      raise fail("input_size", "a multiple of 8 (the grid stride)", input_size)
    if backbone not in YOLO_BACKBONES:
      raise fail("backbone", f"one of {sorted(YOLO_BACKBONES)}", backbone)
    self.features = _ConvStack(in_channels, YOLO_BACKBONES[backbone], act="leaky_relu",
                               impl=impl, dtype=dtype, rngs=rngs)
    self.head = nn.Conv(self.features.out_channels, num_anchors * (5 + num_classes), 1,
                        impl=impl, dtype=dtype, rngs=rngs)
    self.num_classes, self.num_anchors = num_classes, num_anchors

  def __call__(self, x, *, train: bool = False, rngs=None):
    del rngs
    y = self.head(self.features(x, train=train))
    n, s1, s2, _ = y.shape
    return y.reshape(n, s1, s2, self.num_anchors, 5 + self.num_classes)


PRESETS = {
    "localizer": Localizer,
    "sliding_window_net": SlidingWindowNet,
    "yolo_tiny": YOLO,
    "yolo_small": lambda **kw: YOLO(backbone="darknet_small", **kw),
}
