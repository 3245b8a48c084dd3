"""Model families, one file each, and the registry of named presets."""

from cnn_lab.models.registry import check_concrete, create_model, list_models, param_count

__all__ = ["check_concrete", "create_model", "list_models", "param_count"]
