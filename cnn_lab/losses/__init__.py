"""Pure loss functions of arrays."""

from cnn_lab.losses.classification import (softmax_cross_entropy,
                                            softmax_cross_entropy_per_example)
from cnn_lab.losses.segmentation import dice_loss, pixel_cross_entropy

__all__ = ["dice_loss", "pixel_cross_entropy", "softmax_cross_entropy",
           "softmax_cross_entropy_per_example"]
