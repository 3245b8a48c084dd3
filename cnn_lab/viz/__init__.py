"""Figures a person can open: curves, images, filters."""

from cnn_lab.viz.curves import plot_curves, plot_training_error
from cnn_lab.viz.detections import draw_boxes, draw_points, grid

__all__ = ["draw_boxes", "draw_points", "grid", "plot_curves", "plot_training_error"]
