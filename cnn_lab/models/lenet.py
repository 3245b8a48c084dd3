"""LeNet-5 (LeCun, Bottou, Bengio, Haffner 1998), its modern form, and the course's CNN example.

Classic LeNet-5, 32x32x1 input; 60,000 trainable parameters before the output layer:
  C1  6@5x5 conv                      156
  S2  2x2 average, x coef + bias        12
  C3  16@5x5 conv over Table I's       1,516   (60 of the 96 map pairs connected)
      partial connection scheme
  S4  2x2 average, x coef + bias        32
  C5  120@5x5 conv                   48,120
  F6  84 units                       10,164
Every hidden unit is squashed by f(a) = 1.7159 tanh(2a/3) (the paper's appendix A).
The output layer is, by default, a trained linear layer with softmax cross-entropy
(84 x 10 + 10 = 850 parameters), as every modern re-implementation does; with
`output="rbf"` it is the paper's: one Euclidean RBF unit per class,
y_i = sum_j (x_j - w_ij)^2, whose centres w_i are fixed +-1 bitmaps of the digits in
a 7x12 grid (`RBF_BITMAPS`, drawn here in the paper's format; no trainable
parameters). The model returns -y as logits, so softmax cross-entropy on them is the
paper's MAP criterion E = y_D + log(exp(-j) + sum_i exp(-y_i)) as j -> infinity
(`lenet5_mnist.py:classic` adds label smoothing as the stand-in for a finite j).

Modern LeNet-5: ReLU, 2x2 max pooling, full C3, optional dropout (61,706 parameters).

The course's "CNN example" (32x32x3): CONV1 8@5x5, POOL, CONV2 16@5x5, POOL,
FC 120, FC 84, softmax 10; parameters 608 / 3,216 / 48,120 / 10,164 / 850.
"""

from __future__ import annotations

import functools
import math

import jax.numpy as jnp
import numpy as np
from flax import nnx

from cnn_lab import nn, ops
from cnn_lab.errors import fail
from cnn_lab.models.common import check_input_size, dropout
from cnn_lab.nn import record

# Table I of the paper: the S2 maps each C3 map reads.
C3_TABLE = ((0, 1, 2), (1, 2, 3), (2, 3, 4), (3, 4, 5), (4, 5, 0), (5, 0, 1),
            (0, 1, 2, 3), (1, 2, 3, 4), (2, 3, 4, 5), (3, 4, 5, 0), (4, 5, 0, 1), (5, 0, 1, 2),
            (0, 1, 3, 4), (1, 2, 4, 5), (0, 2, 3, 5), (0, 1, 2, 3, 4, 5))


def scaled_tanh(x):
  """LeCun's squashing function f(a) = A tanh(S a), A = 1.7159, S = 2/3."""
  return 1.7159 * jnp.tanh(x * (2.0 / 3.0))


def conv_pool_side(n: int) -> int:
  """Side after VALID 5x5 conv, 2x2 pool, 5x5 conv, 2x2 pool (32 -> 5)."""
  for f, s in ((5, 1), (2, 2), (5, 1), (2, 2)):
    n = ops.output_size(n, f, 0, s)
  return n


class Subsampling(nnx.Module):
  """LeNet's S layers: 2x2 average times a trainable coefficient plus a bias, per map."""

  def __init__(self, features: int, *, impl: str = "xla", rngs: nnx.Rngs):
    del rngs
    self.coef = nnx.Param(jnp.ones((features,)))
    self.bias = nnx.Param(jnp.zeros((features,)))
    self.impl = impl

  def __call__(self, x):
    y = ops.avg_pool(x, 2, impl=self.impl) * self.coef[...] + self.bias[...]
    record(self, "subsampling", y)
    return y


class SparseConv(nnx.Module):
  """A conv whose output map j reads only the input maps `table[j]` (LeNet's C3).

  Stores only the connected kernels, `[*K, sum(len(t)) ]`, and scatters them into a
  dense `[*K, I, O]` kernel for the convolution, so the parameter count is exact.
  """

  def __init__(self, in_features: int, table, kernel_size: int = 5, *, impl: str = "xla",
               rngs: nnx.Rngs):
    # Static tuples, not arrays: NNX would count arrays as state.
    self.in_idx = tuple(i for t in table for i in t)
    self.out_idx = tuple(j for j, t in enumerate(table) for _ in t)
    self.shape = (kernel_size, kernel_size, in_features, len(table))
    fan_in = np.array([len(table[j]) for j in self.out_idx]) * kernel_size ** 2
    std = 1.0 / np.sqrt(fan_in)  # LeCun normal init per connection's own fan-in
    self.kernel = nnx.Param(
        nn.init.normal(1.0)(rngs.params(), (kernel_size, kernel_size,
                                            len(self.in_idx))) * std)
    self.bias = nnx.Param(jnp.zeros((len(table),)))
    self.impl = impl

  def dense_kernel(self):
    k = self.kernel[...]
    return jnp.zeros(self.shape, k.dtype).at[:, :, np.array(self.in_idx),
                                             np.array(self.out_idx)].set(k)

  def __call__(self, x):
    y = ops.conv(x, self.dense_kernel(), self.bias[...], impl=self.impl)
    # only the connected kernels multiply: spatial outputs x kernel area x connections
    record(self, "sparse_conv", y,
           math.prod(y.shape[:-1]) * self.shape[0] * self.shape[1] * len(self.in_idx))
    return y


# The RBF centres: a 7-wide, 12-high bitmap per digit ('#' = +1, '.' = -1), as the
# paper's Figure 3 draws its output codes.
RBF_BITMAPS = (
    (".......", "..###..", ".#...#.", "#.....#", "#.....#", "#.....#", "#.....#", "#.....#",
     "#.....#", ".#...#.", "..###..", "......."),
    (".......", "...#...", "..##...", ".#.#...", "...#...", "...#...", "...#...", "...#...",
     "...#...", "...#...", ".#####.", "......."),
    (".......", "..###..", ".#...#.", "#.....#", "......#", ".....#.", "....#..", "...#...",
     "..#....", ".#.....", "#######", "......."),
    (".......", ".#####.", "#.....#", "......#", "......#", "..####.", "......#", "......#",
     "......#", "#.....#", ".#####.", "......."),
    (".......", ".....#.", "....##.", "...#.#.", "..#..#.", ".#...#.", "#######", ".....#.",
     ".....#.", ".....#.", ".....#.", "......."),
    (".......", "#######", "#......", "#......", "#......", "######.", "......#", "......#",
     "......#", "#.....#", ".#####.", "......."),
    (".......", "..####.", ".#.....", "#......", "#......", "######.", "#.....#", "#.....#",
     "#.....#", "#.....#", ".#####.", "......."),
    (".......", "#######", "......#", ".....#.", ".....#.", "....#..", "....#..", "...#...",
     "...#...", "..#....", "..#....", "......."),
    (".......", ".#####.", "#.....#", "#.....#", "#.....#", ".#####.", "#.....#", "#.....#",
     "#.....#", "#.....#", ".#####.", "......."),
    (".......", ".#####.", "#.....#", "#.....#", "#.....#", "#.....#", ".######", "......#",
     "......#", ".....#.", ".####..", "......."),
)


def rbf_centres() -> np.ndarray:
  """`[84, 10]` float32 +-1: column i is digit i's 7x12 bitmap, row by row."""
  return np.array([[1.0 if c == "#" else -1.0 for row in bitmap for c in row]
                   for bitmap in RBF_BITMAPS], np.float32).T


class RBFOutput(nnx.Module):
  """The paper's output layer: `[N, 84]` -> minus the squared distances to fixed
  centres `[N, K]` (no trainable parameters)."""

  def __init__(self, num_classes: int = 10):
    if num_classes != len(RBF_BITMAPS):
      raise fail("num_classes", f"{len(RBF_BITMAPS)} for output='rbf' (one bitmap per "
                 "digit)", num_classes)
    self.centres = tuple(map(tuple, rbf_centres().tolist()))  # static: not a parameter

  def __call__(self, x):
    w = jnp.asarray(self.centres, x.dtype)
    y = jnp.sum(x * x, -1, keepdims=True) - 2.0 * x @ w + jnp.sum(w * w, 0)
    record(self, "rbf", y, math.prod(x.shape) * y.shape[-1])
    return -y


class LeNet5(nnx.Module):
  """LeNet-5. `x: [N, S, S, in_channels]` (S >= 32 classic, >= 28 modern) -> logits `[N, K]`."""

  def __init__(self, num_classes: int = 10, *, in_channels: int = 1, input_size: int = 32,
               classic: bool = True, dropout: float = 0.0, output: str = "linear",
               impl: str = "xla", dtype=None, rngs: nnx.Rngs):
    check_input_size(input_size, 32 if classic else 28,
                "LeNet-5 classic (C5 is 5x5 on a 5x5 map)" if classic else "modern LeNet-5")
    self.classic = classic
    self.act = scaled_tanh if classic else nnx.relu
    conv = dict(padding="VALID", impl=impl, dtype=dtype, rngs=rngs)
    self.c1 = nn.Conv(in_channels, 6, 5, **conv)
    if classic:
      self.s2 = Subsampling(6, impl=impl, rngs=rngs)
      self.c3 = SparseConv(6, C3_TABLE, impl=impl, rngs=rngs)
      self.s4 = Subsampling(16, impl=impl, rngs=rngs)
      self.c5 = nn.Conv(16, 120, 5, **conv)
      side = ops.output_size(input_size, 32, 0, 1)  # 1 at 32x32: C5 sees the whole map
      flat = 120 * side * side
    else:
      self.s2 = nn.MaxPool(2, impl=impl)
      self.c3 = nn.Conv(6, 16, 5, **conv)
      self.s4 = nn.MaxPool(2, impl=impl)
      flat = 16 * conv_pool_side(input_size) ** 2
      self.c5 = nn.Dense(flat, 120, dtype=dtype, rngs=rngs)
      flat = 120
    self.f6 = nn.Dense(flat, 84, dtype=dtype, rngs=rngs)
    if output not in ("linear", "rbf"):
      raise fail("output", "'linear' or 'rbf'", output)
    self.output = nn.Dense(84, num_classes, dtype=dtype, rngs=rngs) if output == "linear" \
        else RBFOutput(num_classes)
    self.dropout = nnx.Dropout(dropout) if dropout else None

  def features(self, x, *, train: bool = False, rngs=None):
    """The 84-d F6 representation `[N, 84]`."""
    act = self.act
    x = self.s2(act(self.c1(x)))
    x = act(x) if self.classic else x  # the paper squashes after subsampling too
    x = self.s4(act(self.c3(x)))
    if self.classic:
      x = nn.flatten(act(self.c5(act(x))))  # C5: 5x5 conv on the 5x5 maps
    else:
      x = act(self.c5(dropout(self.dropout, nn.flatten(x), train, rngs)))
    return act(self.f6(dropout(self.dropout, x, train, rngs)))

  def __call__(self, x, *, train: bool = False, rngs=None):
    return self.output(dropout(self.dropout, self.features(x, train=train, rngs=rngs),
                               train, rngs))


class CNNExample(nnx.Module):
  """The course's LeNet-like example: 32x32x3 -> CONV8 -> POOL -> CONV16 -> POOL -> 120 -> 84."""

  def __init__(self, num_classes: int = 10, *, in_channels: int = 3, input_size: int = 32,
               impl: str = "xla", dtype=None, rngs: nnx.Rngs):
    check_input_size(input_size, 16, "the CNN example")
    conv = dict(padding="VALID", impl=impl, dtype=dtype, rngs=rngs)
    self.conv1 = nn.Conv(in_channels, 8, 5, **conv)
    self.pool = nn.MaxPool(2, impl=impl)
    self.conv2 = nn.Conv(8, 16, 5, **conv)
    self.fc3 = nn.Dense(16 * conv_pool_side(input_size) ** 2, 120, dtype=dtype, rngs=rngs)
    self.fc4 = nn.Dense(120, 84, dtype=dtype, rngs=rngs)
    self.output = nn.Dense(84, num_classes, dtype=dtype, rngs=rngs)

  def __call__(self, x, *, train: bool = False, rngs=None):
    del train, rngs
    x = self.pool(nnx.relu(self.conv1(x)))
    x = self.pool(nnx.relu(self.conv2(x)))
    x = nnx.relu(self.fc3(nn.flatten(x)))
    return self.output(nnx.relu(self.fc4(x)))


PRESETS = {
    "lenet5": LeNet5,
    "lenet5_modern": functools.partial(LeNet5, classic=False),
    "cnn_example": CNNExample,
}
