"""Neural style transfer: feature extractors and the optimisation of the generated image.
The costs are in `cnn_lab.losses.style`."""

from cnn_lab.style.extractors import EXTRACTORS, Extractor, make_extractor
from cnn_lab.style.optimize import StyleTransferResult, run_style_transfer

__all__ = ["EXTRACTORS", "Extractor", "StyleTransferResult", "make_extractor",
           "run_style_transfer"]
