"""Flax NNX layers and blocks built on `cnn_lab.ops`."""

from flax.nnx import BatchNorm, Dropout

from cnn_lab.nn.layers import (ACTIVATIONS, LRN, AvgPool, Conv, ConvTranspose, Dense,
                               DepthwiseConv, MaxPool, activation, flatten)

__all__ = ["BatchNorm", "Dropout", "ACTIVATIONS", "LRN", "AvgPool", "Conv", "ConvTranspose",
           "Dense", "DepthwiseConv", "MaxPool", "activation", "flatten"]
