"""Model families, one file each, and the registry of named presets."""

from cnn_lab.models.registry import create_model, list_models, param_count

__all__ = ["create_model", "list_models", "param_count"]
