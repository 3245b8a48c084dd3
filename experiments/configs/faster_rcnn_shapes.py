"""Faster R-CNN (region proposal network + RoIAlign head) on multi-object `shapes`.

Command:
  python -m experiments.train --config=experiments/configs/faster_rcnn_shapes.py --workdir=/tmp/frcnn

Trains `faster_rcnn` (stride-4 backbone, 9 anchors per cell on a 16x16 map, RoIAlign
7x7, two 256-unit layers) on the embedded `shapes/multi_64` (the split YOLO trains on:
1-4 objects of 8 classes per 64x64 scene; 4,000 train, 500 test) and evaluates the same
VOC mAP@0.5 and COCO mAP@[.5:.95] (`eval/voc_mAP50`, `eval/coco_mAP`).
Measured (seed 0, default config, 2 CPU cores): eval/voc_mAP50 0.9985, eval/coco_mAP
0.919 (AP75 0.994) after 5,000 steps (20 epochs), 690 s from launch to end; against
YOLO on the same split: `python -m experiments.compare_detectors` (README).
Presets: :test (3 steps, for the tests); :gpu, :tpu (bfloat16, bigger batch; docs/scale.md);
:small (`faster_rcnn_small`, a wider backbone); :roi_pool (Fast R-CNN's RoI max pooling
instead of RoIAlign: after 1,000 steps COCO mAP 0.577 against RoIAlign's 0.806, and 4x
slower per step here); :voc (catalog `voc/2007` at 224x224, 20 classes).
"""

from cnn_lab.train.configs import apply_presets
from experiments.configs.shapes_base import shapes_config, shapes_presets


def _small(c):
  c.model.name = "faster_rcnn_small"


def _roi_pool(c):
  c.model.pool = "max"


def _voc(c):
  c.dataset.update(name="voc/2007", image_size=224, cache=False, eval_split="")  # its own
  c.two_stage.max_objects = 64  # VOC 2007 has up to 42 objects in an image
  c.model.anchor_sizes = (0.08, 0.16, 0.32, 0.64)


PRESETS = shapes_presets(test_size=64, small=_small, roi_pool=_roi_pool, voc=_voc)


def get_config(arg=None):
  c = shapes_config(
      "two_stage", size=64, dataset=dict(name="shapes/multi_64"),
      model=dict(name="faster_rcnn", pool="align", pool_size=7, anchor_sizes=(0.2, 0.3, 0.45),
                 aspect_ratios=(0.5, 1.0, 2.0)),
      batch_size=16, num_epochs=20.0, optimizer=dict(learning_rate=1e-3),
      eval_every_steps=1000, checkpoint_every_steps=1000,
      two_stage=dict(postprocess=dict(score_threshold=0.01)))
  return apply_presets(c, arg, PRESETS)
