"""scratch vs xla for the ops that XLA also has: conv, transpose conv, pooling; box ops.

GFLOP/s counts 2 FLOPs per multiply-add of the forward pass; forward+backward
is counted as 3 forward passes (the input and the kernel gradient each cost one).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from cnn_lab import ops
from cnn_lab.benchmarks.timing import median_seconds


def _cases(quick: bool):
  n = 8 if quick else 64
  conv = lambda impl: lambda x, w: ops.conv(x, w, padding="SAME", impl=impl)
  tconv = lambda impl: lambda x, w: ops.conv_transpose(x, w, stride=2, padding="SAME",
                                                       impl=impl)
  pool = lambda impl: lambda x, w: ops.max_pool(x, 3, 2, "SAME", impl=impl) + 0 * w.sum()
  return [
      # name, op factory, x shape, w shape, forward FLOPs
      (f"conv {n}x32x32x64->64 3x3 SAME", conv, (n, 32, 32, 64), (3, 3, 64, 64),
       2 * n * 32 * 32 * 64 * 64 * 9),
      (f"conv_transpose {n}x16x16x64->64 3x3 s2", tconv, (n, 16, 16, 64), (3, 3, 64, 64),
       2 * n * 16 * 16 * 64 * 64 * 9),
      (f"max_pool {n}x32x32x64 3x3 s2", pool, (n, 32, 32, 64), (1,), n * 16 * 16 * 64 * 9),
  ]


def suite(quick: bool = False):
  """Yields one row per (case, impl): forward and forward+backward times and GFLOP/s."""
  for name, factory, x_shape, w_shape, flops in _cases(quick):
    x = jax.random.normal(jax.random.key(0), x_shape)
    w = jax.random.normal(jax.random.key(1), w_shape) * 0.05
    times = {}
    for impl in ops.IMPLS:
      f = factory(impl)
      fwd = jax.jit(f)
      fwd_bwd = jax.jit(jax.grad(lambda x, w: jnp.sum(f(x, w) ** 2), argnums=(0, 1)))
      times[impl] = (median_seconds(fwd, x, w), median_seconds(fwd_bwd, x, w))
    for impl, (t_f, t_fb) in times.items():
      yield {"suite": "ops", "case": name, "impl": impl,
             "fwd_ms": 1e3 * t_f, "fwd_gflops": flops / t_f / 1e9,
             "fwd_bwd_ms": 1e3 * t_fb, "fwd_bwd_gflops": 3 * flops / t_fb / 1e9,
             "fwd_slowdown_vs_xla": t_f / times["xla"][0],
             "fwd_bwd_slowdown_vs_xla": t_fb / times["xla"][1]}
  yield from box_suite(quick)


def _random_boxes(n: int, seed: int = 0):
  k1, k2, k3 = jax.random.split(jax.random.key(seed), 3)
  xy = jax.random.uniform(k1, (n, 2)) * 0.9
  wh = jax.random.uniform(k2, (n, 2), minval=0.02, maxval=0.1)
  return jnp.concatenate([xy, xy + wh], 1), jax.random.uniform(k3, (n,))


def box_suite(quick: bool = False):
  """Pairwise IoU (N x N) and NMS (IoU 0.5, up to 100 kept) at 1,000 and 10,000 boxes;
  `tf.image.non_max_suppression` alongside when TensorFlow is installed."""
  try:
    import tensorflow as tf
  except ImportError:
    tf = None
  for n in (1000,) if quick else (1000, 10_000):
    boxes, scores = _random_boxes(n)
    iou = jax.jit(ops.boxes.iou)
    nms = jax.jit(lambda b, s: ops.boxes.nms(b, s, 0.5, 100))
    yield {"suite": "ops", "case": f"iou {n}x{n} boxes", "impl": "jax",
           "fwd_ms": 1e3 * median_seconds(iou, boxes, boxes)}
    yield {"suite": "ops", "case": f"nms {n} boxes, keep <= 100", "impl": "jax",
           "fwd_ms": 1e3 * median_seconds(nms, boxes, scores)}
    if tf is not None:
      tb, ts = tf.constant(boxes), tf.constant(scores)
      tf_nms = tf.function(lambda b, s: tf.image.non_max_suppression(b, s, 100, 0.5))
      yield {"suite": "ops", "case": f"nms {n} boxes, keep <= 100", "impl": "tf.image",
             "fwd_ms": 1e3 * median_seconds(lambda: tf_nms(tb, ts).numpy())}
