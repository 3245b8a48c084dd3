"""Pure loss functions of arrays."""

from cnn_lab.losses.classification import (softmax_cross_entropy,
                                            softmax_cross_entropy_per_example)

__all__ = ["softmax_cross_entropy", "softmax_cross_entropy_per_example"]
