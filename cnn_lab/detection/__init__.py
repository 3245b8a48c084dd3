"""Detection: the course's localization and landmarks, and YOLO with anchor boxes.

Boxes are normalised corner boxes `(x1, y1, x2, y2)` in [0, 1] of the image;
landmarks are normalised `(x, y)` points. See `cnn_lab.ops.boxes` for the box ops
and `cnn_lab.eval.detection` for mAP.
"""
