"""Figures a person can open: curves, images, filters."""

from cnn_lab.viz.curves import import_pyplot_in_background, plot_curves, plot_training_error
from cnn_lab.viz.detections import draw_boxes, draw_points, grid
from cnn_lab.viz.segmentation import colorize, legend, segmentation_panel

__all__ = ["colorize", "draw_boxes", "draw_points", "grid", "import_pyplot_in_background",
           "legend", "plot_curves", "plot_training_error", "segmentation_panel"]
