"""AlexNet: torchvision's single-tower layout and the paper's original two-tower one.

torchvision (61,100,840 parameters at 1000 classes): conv 64@11 s4 p2, pool 3/2,
conv 192@5 p2, pool 3/2, conv 384@3, conv 256@3, conv 256@3, pool 3/2,
adaptive average pool to 6x6, dropout-FC 4096, dropout-FC 4096, FC.

Krizhevsky et al. 2012 (60,965,224 parameters): 227x227 input, conv 96@11 s4 ->
LRN -> pool 3/2, conv 256@5 p2 in two groups -> LRN -> pool, conv 384@3 (both
towers see everything), conv 384@3 and conv 256@3 in two groups, pool, FC 4096,
4096, 1000. LRN with k=2, n=5, alpha=1e-4, beta=0.75. Minimum input: 63 (torchvision), 67 (paper).
"""

from __future__ import annotations

from flax import nnx

from cnn_lab import nn, ops
from cnn_lab.models.common import check_input_size, dropout


class AlexNet(nnx.Module):
  """`x: [N, S, S, C]` -> logits `[N, K]`."""

  def __init__(self, num_classes: int = 1000, *, in_channels: int = 3, input_size: int = 224,
               original: bool = False, dropout_rate: float = 0.5, impl: str = "xla",
               dtype=None, rngs: nnx.Rngs):
    check_input_size(input_size, 67 if original else 63,
                     "AlexNet (paper)" if original else "AlexNet")
    widths = (96, 256, 384, 384, 256) if original else (64, 192, 384, 256, 256)
    groups = (1, 2, 1, 2, 2) if original else (1, 1, 1, 1, 1)
    kernels, strides = (11, 5, 3, 3, 3), (4, 1, 1, 1, 1)
    pads = (0 if original else 2, 2, 1, 1, 1)
    conv = dict(impl=impl, dtype=dtype, rngs=rngs)
    chans = (in_channels,) + widths
    self.convs = nnx.List([nn.Conv(chans[i], chans[i + 1], kernels[i], stride=strides[i],
                                   padding=pads[i], groups=groups[i], **conv)
                           for i in range(5)])
    self.lrn = nn.LRN(2, 2.0, 1e-4, 0.75, impl=impl) if original else None
    self.pool = nn.MaxPool(3, 2, impl=impl)
    self.original = original
    if original:
      side = input_size
      for i, (k, s, p) in enumerate(zip(kernels, strides, pads)):
        side = ops.output_size(side, k, p, s)
        if i in (0, 1, 4):  # the 3/2 max pools, as in __call__
          side = ops.output_size(side, 3, 0, 2)
      self.avgpool = None
    else:
      side = 6
      self.avgpool = nn.AdaptiveAvgPool(6)
    self.fc6 = nn.Dense(widths[-1] * side * side, 4096, dtype=dtype, rngs=rngs)
    self.fc7 = nn.Dense(4096, 4096, dtype=dtype, rngs=rngs)
    self.fc8 = nn.Dense(4096, num_classes, dtype=dtype, rngs=rngs)
    self.drop = nnx.Dropout(dropout_rate) if dropout_rate else None

  def __call__(self, x, *, train: bool = False, rngs=None):
    for i, conv in enumerate(self.convs):
      x = nnx.relu(conv(x))
      if i < 2 and self.lrn is not None:
        x = self.lrn(x)
      if i in (0, 1, 4):
        x = self.pool(x)
    if self.avgpool is not None:
      x = self.avgpool(x)
    x = nn.flatten(x)
    x = nnx.relu(self.fc6(dropout(self.drop, x, train, rngs)))
    x = nnx.relu(self.fc7(dropout(self.drop, x, train, rngs)))
    return self.fc8(x)


PRESETS = {
    "alexnet": AlexNet,
    "alexnet_original": lambda input_size=227, **kw: AlexNet(original=True,
                                                             input_size=input_size, **kw),
}
