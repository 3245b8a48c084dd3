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
* `FasterRCNN`: a stride-4 backbone, a region proposal network over its feature map,
  RoIAlign (or RoI max pooling) of every proposal and a two-layer head that classifies
  it (K classes + background) and refines its box per class; a dict of outputs, see
  `FasterRCNN.__call__` and `cnn_lab.detection.rcnn`.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from flax import nnx

from cnn_lab import nn, ops
from cnn_lab.detection import rcnn
from cnn_lab.errors import fail
from cnn_lab.models.common import check_input_size


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


RCNN_BACKBONES = {
    # stride 4: a 64x64 image gives a 16x16 map, 4 cells across the smallest shapes
    "rcnn_tiny": [16, "M", 32, "M", 64, (32, 1), 64, 128],
    "rcnn_small": [32, "M", 64, "M", 128, (64, 1), 128, 256],
}


class FasterRCNN(nnx.Module):
  """Faster R-CNN (Ren et al. 2015) on a stride-4 feature map of `[N, H, W, C]` images.

  Anchors: `anchor_sizes` (fractions of the image) x `aspect_ratios` (h / w) on every
  cell. The RPN is a 3x3 conv and two 1x1 convs (objectness, deltas); proposals are
  not differentiated through (the approximate joint training of the paper). The head:
  `pool` ("align": RoIAlign, "max": RoI max pooling) to `pool_size^2` cells, two fully
  connected layers of `hidden`, then K + 1 class logits and K class-specific deltas.
  `rpn` and `roi` hold the proposal and sampling settings (`cnn_lab.detection.rcnn`).
  """

  def __init__(self, *, num_classes: int = 8, in_channels: int = 3, input_size: int = 64,
               backbone: str = "rcnn_tiny", anchor_sizes=(0.2, 0.3, 0.45),
               aspect_ratios=(0.5, 1.0, 2.0), rpn_channels: int = 128, pool: str = "align",
               pool_size: int = 7, sampling_ratio: int = 2, hidden: int = 256,
               rpn: rcnn.RPNSettings = rcnn.RPNSettings(),
               roi: rcnn.RoISettings = rcnn.RoISettings(), impl: str = "xla", dtype=None,
               rngs: nnx.Rngs):
    check_input_size(input_size, 16, "faster_rcnn")
    if input_size % 4:
      raise fail("input_size", "a multiple of 4 (the feature stride)", input_size)
    if backbone not in RCNN_BACKBONES:
      raise fail("backbone", f"one of {sorted(RCNN_BACKBONES)}", backbone)
    if pool not in ("align", "max"):
      raise fail("pool", "'align' (RoIAlign) or 'max' (RoI max pooling)", pool)
    rcnn.anchor_grid(1, anchor_sizes, aspect_ratios)  # checks them
    self.anchor_sizes, self.aspect_ratios = tuple(anchor_sizes), tuple(aspect_ratios)
    self.features = _ConvStack(in_channels, RCNN_BACKBONES[backbone], act="relu", impl=impl,
                               dtype=dtype, rngs=rngs)
    c, a = self.features.out_channels, len(anchor_sizes) * len(aspect_ratios)
    small = nn.init.normal  # torchvision's head initialisation
    self.rpn_conv = nn.Conv(c, rpn_channels, 3, kernel_init=small(0.01), impl=impl,
                            dtype=dtype, rngs=rngs)
    self.rpn_logits = nn.Conv(rpn_channels, a, 1, kernel_init=small(0.01), impl=impl,
                              dtype=dtype, rngs=rngs)
    self.rpn_deltas = nn.Conv(rpn_channels, 4 * a, 1, kernel_init=small(0.01), impl=impl,
                              dtype=dtype, rngs=rngs)
    self.fc1 = nn.Dense(pool_size * pool_size * c, hidden, dtype=dtype, rngs=rngs)
    self.fc2 = nn.Dense(hidden, hidden, dtype=dtype, rngs=rngs)
    self.classifier = nn.Dense(hidden, num_classes + 1, kernel_init=small(0.01), dtype=dtype,
                               rngs=rngs)
    self.box = nn.Dense(hidden, 4 * num_classes, kernel_init=small(0.001), dtype=dtype,
                        rngs=rngs)
    self.num_classes, self.pool, self.pool_size = num_classes, pool, pool_size
    self.sampling_ratio, self.grid = sampling_ratio, input_size // 4
    self.rpn_settings, self.roi_settings = rpn, roi

  def _pool(self, features, rois):
    """`[N, S, S, C]`, normalised `[N, R, 4]` -> `[N, R, pool_size^2 * C]`."""
    if self.pool == "align":
      one = lambda f, b: ops.roi.roi_align(f, b, self.pool_size, spatial_scale=self.grid,
                                          sampling_ratio=self.sampling_ratio)
    else:
      one = lambda f, b: ops.roi.roi_max_pool(f, b, self.pool_size, spatial_scale=self.grid)
    pooled = jax.vmap(one)(features, rois)
    return pooled.reshape(*pooled.shape[:2], -1)

  def __call__(self, x, *, train: bool = False, rngs=None, targets=None):
    """`[N, H, W, C]` -> dict of outputs.

    Always: `rpn_logits [N, A]`, `rpn_deltas [N, A, 4]` over the anchors, and for R RoIs
    per image `class_logits [N, R, K + 1]` (0: background) and `box_deltas [N, R, K, 4]`.
    With `targets=(boxes [N, M, 4], classes [N, M])` (training): the RoIs are a sample
    of proposals and objects (`rcnn.sample_rois`), and the outputs add `rpn_labels`,
    `rpn_targets`, `roi_labels`, `roi_targets` for `rcnn.faster_rcnn_loss`; sampling
    draws from `rngs.sampling` (the step's `sampling` stream; required). Without: the RoIs are the
    test-time proposals, added as `proposals [N, P, 4]` and `proposal_valid [N, P]`.
    """
    features = self.features(x, train=train)
    n = features.shape[0]
    h = nnx.relu(self.rpn_conv(features))
    rpn_logits = self.rpn_logits(h).reshape(n, -1)
    rpn_deltas = self.rpn_deltas(h).reshape(n, -1, 4)
    anchors = jnp.asarray(rcnn.anchor_grid(self.grid, self.anchor_sizes, self.aspect_ratios))
    s = self.rpn_settings
    training = targets is not None
    propose = lambda lg, d: rcnn.propose(
        lg, d, anchors, pre_nms=s.pre_nms_train if training else s.pre_nms_test,
        post_nms=s.post_nms_train if training else s.post_nms_test, nms_iou=s.nms_iou,
        min_size=s.min_size)
    proposals, _, valid = jax.vmap(propose)(
        jax.lax.stop_gradient(rpn_logits.astype(jnp.float32)),
        jax.lax.stop_gradient(rpn_deltas.astype(jnp.float32)))
    out = {"rpn_logits": rpn_logits, "rpn_deltas": rpn_deltas}
    if training:
      boxes, classes = targets
      if rngs is None or "sampling" not in rngs:
        raise fail("rngs", "nnx.Rngs with a `sampling` stream when targets are given "
                   "(the training step passes one)", rngs)
      key = rngs.sampling()
      k_rpn, k_roi = jax.random.split(key)
      labels, deltas = jax.vmap(rcnn.rpn_targets, in_axes=(None, 0, 0, 0, None))(
          anchors, boxes, classes, jax.random.split(k_rpn, n), s)
      rois, roi_labels, roi_targets = jax.vmap(
          rcnn.sample_rois, in_axes=(0, 0, 0, 0, 0, None))(
              proposals, valid, boxes, classes, jax.random.split(k_roi, n), self.roi_settings)
      out.update(rpn_labels=labels, rpn_targets=deltas, roi_labels=roi_labels,
                 roi_targets=roi_targets)
    else:
      rois = proposals
      out.update(proposals=proposals, proposal_valid=valid)
    hidden = nnx.relu(self.fc2(nnx.relu(self.fc1(self._pool(features, rois)))))
    out["class_logits"] = self.classifier(hidden)
    out["box_deltas"] = self.box(hidden).reshape(n, rois.shape[1], self.num_classes, 4)
    return out


PRESETS = {
    "localizer": Localizer,
    "sliding_window_net": SlidingWindowNet,
    "yolo_tiny": YOLO,
    "yolo_small": functools.partial(YOLO, backbone="darknet_small"),
    "faster_rcnn": FasterRCNN,
    "faster_rcnn_small": functools.partial(FasterRCNN, backbone="rcnn_small"),
}
