"""U-Net (Ronneberger et al. 2015) for semantic segmentation: the course's and the paper's.

The course's (`unet`): `ConvBlock` = two 3x3 SAME convolutions with ReLU, optional
dropout, optional 2x2 max pooling, returning `(next, skip)`; four of them halve the
input four times, a fifth (dropout, no pooling) is the bottleneck; `UpsamplingBlock` =
3x3 transpose convolution with stride 2, concatenation with the skip, two 3x3
convolutions. Then a 3x3 conv with ReLU and a 1x1 conv to the class logits. With 32
base filters and 23 classes it has 8,640,471 parameters; the output keeps the input's
height and width, which must be multiples of 16.

The paper's (`unet_original`): VALID 3x3 convolutions, 2x2 up-convolutions halving the
channels, skips centre-cropped to the decoder's size before concatenation, 64 base
filters: a 572x572 input gives a 388x388 output map.
Both map `[N, H, W, C]` to per-pixel logits `[N, H', W', K]`.
"""

from __future__ import annotations

import jax.numpy as jnp
from flax import nnx

from cnn_lab import nn
from cnn_lab.errors import fail
from cnn_lab.models.common import dropout

he_normal = nn.init.he_normal()


def _conv(in_features, out_features, kernel_size, padding, impl, rngs, dtype=None):
  return nn.Conv(in_features, out_features, kernel_size, padding=padding, impl=impl,
                 kernel_init=he_normal, dtype=dtype, rngs=rngs)


class ConvBlock(nnx.Module):
  """Two 3x3 conv + ReLU, optional dropout, optional 2x2 max pool -> `(next, skip)`."""

  def __init__(self, in_features: int, filters: int, *, dropout_rate: float = 0.0,
               max_pooling: bool = True, padding: str = "SAME", impl: str = "xla",
               dtype=None, rngs: nnx.Rngs):
    self.conv1 = _conv(in_features, filters, 3, padding, impl, rngs, dtype)
    self.conv2 = _conv(filters, filters, 3, padding, impl, rngs, dtype)
    self.dropout = nnx.Dropout(dropout_rate) if dropout_rate else None
    self.pool = nn.MaxPool(2) if max_pooling else None

  def __call__(self, x, *, train: bool = False, rngs=None):
    skip = nnx.relu(self.conv2(nnx.relu(self.conv1(x))))
    skip = dropout(self.dropout, skip, train, rngs)
    return (self.pool(skip) if self.pool is not None else skip), skip


def center_crop(x, height: int, width: int):
  """`[N, H, W, C]` -> the central `[N, height, width, C]` (the paper's copy-and-crop)."""
  top, left = (x.shape[1] - height) // 2, (x.shape[2] - width) // 2
  return x[:, top:top + height, left:left + width]


class UpsamplingBlock(nnx.Module):
  """Transpose conv (stride 2), concatenate the (cropped) skip, two 3x3 conv + ReLU."""

  def __init__(self, in_features: int, skip_features: int, filters: int, *,
               up_kernel: int = 3, padding: str = "SAME", impl: str = "xla",
               dtype=None, rngs: nnx.Rngs):
    self.up = nn.ConvTranspose(in_features, filters, up_kernel, stride=2,
                               padding="SAME" if up_kernel == 3 else "VALID", impl=impl,
                               kernel_init=he_normal, dtype=dtype, rngs=rngs)
    self.conv1 = _conv(filters + skip_features, filters, 3, padding, impl, rngs, dtype)
    self.conv2 = _conv(filters, filters, 3, padding, impl, rngs, dtype)
    self.relu_after_up = up_kernel == 2  # the paper's "up-convolution" is followed by ReLU

  def __call__(self, x, skip):
    up = self.up(x)
    if self.relu_after_up:
      up = nnx.relu(up)
    skip = center_crop(skip, up.shape[1], up.shape[2])
    y = jnp.concatenate([up, skip], -1)
    return nnx.relu(self.conv2(nnx.relu(self.conv1(y))))


def check_unet_input(input_size, model: str, divisor: int = 16, minimum: int = 16) -> None:
  sizes = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
  if any(s < minimum or s % divisor for s in sizes):
    raise fail("input_size", f"height and width that are multiples of {divisor} and >= "
               f"{minimum} ({model} halves its input four times)", input_size)


class _UNetBase(nnx.Module):
  """Four halving `ConvBlock`s, a bottleneck block, four `UpsamplingBlock`s, then `_head`."""

  def _build(self, in_channels: int, f: int, dropout_rate: float, up_kernel: int, **kw):
    self.down = nnx.List([
        ConvBlock(in_channels, f, **kw), ConvBlock(f, 2 * f, **kw),
        ConvBlock(2 * f, 4 * f, **kw), ConvBlock(4 * f, 8 * f, dropout_rate=dropout_rate, **kw),
        ConvBlock(8 * f, 16 * f, dropout_rate=dropout_rate, max_pooling=False, **kw)])
    self.up = nnx.List([UpsamplingBlock(c, c // 2, c // 2, up_kernel=up_kernel, **kw)
                        for c in (16 * f, 8 * f, 4 * f, 2 * f)])

  def __call__(self, x, *, train: bool = False, rngs=None):
    skips = []
    for block in self.down:
      x, skip = block(x, train=train, rngs=rngs)
      skips.append(skip)
    x = skips.pop()  # the bottleneck's output (it does not pool)
    for block in self.up:
      x = block(x, skips.pop())
    return self._head(x)


class UNet(_UNetBase):
  """The course's U-Net: `[N, H, W, C]` -> logits `[N, H, W, K]`, H and W multiples of 16."""

  def __init__(self, *, num_classes: int = 23, in_channels: int = 3, input_size=(96, 128),
               filters: int = 32, dropout_rate: float = 0.3, impl: str = "xla",
               dtype=None, rngs: nnx.Rngs):
    check_unet_input(input_size, "unet")
    self._build(in_channels, filters, dropout_rate, 3, impl=impl, dtype=dtype, rngs=rngs)
    self.conv = _conv(filters, filters, 3, "SAME", impl, rngs, dtype)
    self.head = nn.Conv(filters, num_classes, 1, impl=impl, dtype=dtype, rngs=rngs)

  def _head(self, x):
    return self.head(nnx.relu(self.conv(x)))


class UNetOriginal(_UNetBase):
  """Ronneberger et al.'s U-Net: VALID convolutions, 572x572 -> 388x388 logits."""

  def __init__(self, *, num_classes: int = 2, in_channels: int = 1, input_size: int = 572,
               filters: int = 64, dropout_rate: float = 0.5, impl: str = "xla",
               dtype=None, rngs: nnx.Rngs):
    if output_size_original(input_size) is None:
      raise fail("input_size", "a size whose every VALID stage stays even and positive "
                 "(e.g. 572, 252, 188, 124)", input_size)
    self._build(in_channels, filters, dropout_rate, 2, padding="VALID", impl=impl,
                dtype=dtype, rngs=rngs)
    self.head = nn.Conv(filters, num_classes, 1, impl=impl, dtype=dtype, rngs=rngs)

  def _head(self, x):
    return self.head(x)


def output_size_original(size: int) -> int | None:
  """The paper's U-Net output side for an input side, or None if a stage would be odd
  before pooling or vanish: 572 -> 388."""
  for _ in range(4):
    size -= 4
    if size <= 0 or size % 2:
      return None
    size //= 2
  size -= 4
  for _ in range(4):
    size = 2 * size - 4
    if size <= 0:
      return None
  return size


PRESETS = {"unet": UNet, "unet_original": UNetOriginal}
