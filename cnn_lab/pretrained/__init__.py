"""Pretrained weights: torch checkpoints read safely without torch, converted to our models."""

from cnn_lab.pretrained.torch_reader import UnsafeCheckpointError, load_torch_checkpoint

__all__ = ["UnsafeCheckpointError", "load_torch_checkpoint"]
