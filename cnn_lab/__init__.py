"""cnn_lab: convolutional networks from first principles to EfficientNet, in JAX/Flax NNX."""

__version__ = "0.1.0"
