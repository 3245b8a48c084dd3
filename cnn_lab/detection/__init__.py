"""Detection: the course's localization and landmarks, YOLO with anchor boxes, and the
region-proposal family (R-CNN's selective search and warped crops, Faster R-CNN's RPN
and RoI head).

Boxes are normalised corner boxes `(x1, y1, x2, y2)` in [0, 1] of the image;
landmarks are normalised `(x, y)` points. See `cnn_lab.ops.boxes` for the box ops,
`cnn_lab.ops.roi` for RoI pooling and RoIAlign, and `cnn_lab.eval.detection` for mAP.
"""
