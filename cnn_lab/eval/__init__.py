"""Evaluators: iterate an evaluation set once and yield `(name, value)` pairs."""

from cnn_lab.eval.classification import evaluate_classification
from cnn_lab.eval.detection import average_precisions, evaluate_detections

__all__ = ["average_precisions", "evaluate_classification", "evaluate_detections"]
