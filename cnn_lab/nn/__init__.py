"""Flax NNX layers and blocks built on `cnn_lab.ops`."""

from flax.nnx import Dropout

from cnn_lab.nn import init
from cnn_lab.nn.blocks import (ConvBNAct, SqueezeExcite, StochasticDepth, make_divisible,
                               zero_last_scale)
from cnn_lab.nn.layers import (ACTIVATIONS, LRN, AdaptiveAvgPool, AvgPool, BatchNorm, Conv,
                               ConvTranspose, Dense, DepthwiseConv, MaxPool, activation,
                               flatten)
from cnn_lab.nn.record import module_paths, record, recording

__all__ = ["init", "Dropout", "ConvBNAct", "SqueezeExcite", "StochasticDepth", "make_divisible",
           "ACTIVATIONS", "LRN", "AdaptiveAvgPool", "AvgPool", "BatchNorm", "Conv",
           "ConvTranspose", "Dense", "DepthwiseConv", "MaxPool", "activation", "flatten",
           "module_paths", "record", "recording", "zero_last_scale"]
