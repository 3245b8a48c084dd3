"""Pure loss functions of arrays."""

from cnn_lab.losses.classification import softmax_cross_entropy

__all__ = ["softmax_cross_entropy"]
