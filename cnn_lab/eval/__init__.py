"""Evaluators: iterate an evaluation set once and yield `(name, value)` pairs."""

from cnn_lab.eval.classification import evaluate_classification

__all__ = ["evaluate_classification"]
