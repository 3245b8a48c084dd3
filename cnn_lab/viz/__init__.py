"""Figures a person can open: curves, images, filters."""

from cnn_lab.viz.curves import plot_curves, plot_training_error

__all__ = ["plot_curves", "plot_training_error"]
