"""Model families, one file each, and the registry of named presets."""

from cnn_lab.models.registry import (check_concrete, check_name, create_model, list_models,
                                    model_options, param_count)

__all__ = ["check_concrete", "check_name", "create_model", "list_models", "model_options",
           "param_count"]
