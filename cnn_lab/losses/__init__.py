"""Pure loss functions of arrays."""

from cnn_lab.losses.classification import (softmax_cross_entropy,
                                            softmax_cross_entropy_per_example)
from cnn_lab.losses.segmentation import dice_loss, pixel_cross_entropy
from cnn_lab.losses.style import (content_cost, gram_matrix, layer_style_cost, style_cost,
                                  total_cost, total_variation)

__all__ = ["content_cost", "gram_matrix", "layer_style_cost", "style_cost", "total_cost",
           "total_variation", "dice_loss", "pixel_cross_entropy", "softmax_cross_entropy",
           "softmax_cross_entropy_per_example"]
