"""Pure loss functions of arrays."""

from cnn_lab.losses.classification import (softmax_cross_entropy,
                                            softmax_cross_entropy_per_example)
from cnn_lab.losses.metric import (batch_all_triplet_loss, batch_hard_triplet_loss,
                                    binary_pair_loss, pair_logits, random_triplet_loss,
                                    semi_hard_triplet_loss, triplet_loss)
from cnn_lab.losses.segmentation import dice_loss, pixel_cross_entropy
from cnn_lab.losses.style import (content_cost, gram_matrix, layer_style_cost, style_cost,
                                  total_cost, total_variation)

__all__ = ["triplet_loss", "random_triplet_loss", "batch_all_triplet_loss",
           "batch_hard_triplet_loss", "semi_hard_triplet_loss", "pair_logits",
           "binary_pair_loss", "content_cost", "gram_matrix", "layer_style_cost", "style_cost", "total_cost",
           "total_variation", "dice_loss", "pixel_cross_entropy", "softmax_cross_entropy",
           "softmax_cross_entropy_per_example"]
