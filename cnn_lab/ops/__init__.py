"""Pure jax.numpy/lax ops; NHWC activations, HWIO kernels; `impl="xla"|"scratch"`."""

from cnn_lab.ops import boxes, roi
from cnn_lab.ops.conv import IMPLS, conv, depthwise_conv, separable_conv
from cnn_lab.ops.transpose import conv_transpose, transpose_output_size
from cnn_lab.ops.filters import FILTERS, detect_edges, edge_filter
from cnn_lab.ops.fusion import materialize
from cnn_lab.ops.normalization import local_response_norm
from cnn_lab.ops.padding import output_size, resolve_padding, zero_pad
from cnn_lab.ops.pool import (adaptive_avg_pool, avg_pool, global_avg_pool, global_max_pool,
                              max_pool)

__all__ = [
    "boxes", "roi",
    "IMPLS", "conv", "conv_transpose", "depthwise_conv", "separable_conv",
    "transpose_output_size", "FILTERS", "detect_edges", "edge_filter", "materialize",
    "local_response_norm",
    "output_size", "resolve_padding", "zero_pad", "adaptive_avg_pool", "avg_pool", "global_avg_pool",
    "global_max_pool", "max_pool",
]
