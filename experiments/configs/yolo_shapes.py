"""YOLOv2-style detection (anchor boxes from k-means) on multi-object `shapes`.

Command:
  python -m experiments.train --config=experiments/configs/yolo_shapes.py --workdir=/tmp/yolo

Trains `yolo_tiny` (Darknet-style backbone, 8x8 grid, 5 anchors) on the embedded
`shapes/multi_64` (1-4 objects of 8 classes per 64x64 scene; 4,000 train, 500 test)
and evaluates VOC mAP@0.5 and COCO mAP@[.5:.95] (`eval/voc_mAP50`, `eval/coco_mAP`).
Measured (seed 0, default config, 2 CPU cores): eval/voc_mAP50 0.981, eval/coco_mAP
0.846 after 5,000 steps (40 epochs) in 500 s of training; k-means anchors' mean IoU
with the training boxes 0.869.
Presets: :test (3 steps, for the tests); :gpu, :tpu (bfloat16, bigger batch; docs/scale.md); :small (`yolo_small`, a wider backbone);
:voc (catalog `voc/2007` at 224x224, 20 classes; prepare it where there is network).
"""

import ml_collections

from experiments.configs.shapes_base import apply_presets, shapes_config


def _small(c):
  c.model.name = "yolo_small"


def _voc(c):
  c.dataset.name, c.dataset.image_size, c.dataset.cache = "voc/2007", 224, False
  c.detection.max_objects = 64  # VOC 2007 has up to 42 objects in an image


def get_config(arg=None):
  c = shapes_config("yolo_tiny", 64, batch_size=32, epochs=40.0, learning_rate=3e-3,
                    test_size=64)
  c.task = "detection"
  c.dataset.name = "shapes/multi_64"
  del c.augment, c.loss  # classification's
  c.detection = ml_collections.ConfigDict(dict(
      max_objects=4, num_anchors=5, anchors=(), horizontal_flip=True, vertical_flip=True,
      loss=dict(coord=5.0, object=1.0, no_object=1.0, classes=1.0, ignore_iou=0.6),
      postprocess=dict(score_threshold=0.01, iou_threshold=0.45, max_detections=50,
                       class_aware=True)))
  c.eval_every_steps = 1000
  c.checkpoint_every_steps = 1000
  return apply_presets(c, arg, {"small": _small, "voc": _voc})
