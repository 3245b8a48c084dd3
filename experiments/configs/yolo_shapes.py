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

from cnn_lab.train.configs import apply_presets
from experiments.configs.shapes_base import shapes_config, shapes_presets


def _small(c):
  c.model.name = "yolo_small"


def _voc(c):
  c.dataset.update(name="voc/2007", image_size=224, cache=False, eval_split="")  # its own
  c.detection.max_objects = 64  # VOC 2007 has up to 42 objects in an image


PRESETS = shapes_presets(test_size=64, small=_small, voc=_voc)


def get_config(arg=None):
  c = shapes_config(
      "detection", model=dict(name="yolo_tiny"), size=64,
      dataset=dict(name="shapes/multi_64"), batch_size=32, num_epochs=40.0,
      optimizer=dict(learning_rate=3e-3), eval_every_steps=1000, checkpoint_every_steps=1000,
      detection=dict(postprocess=dict(score_threshold=0.01)))
  return apply_presets(c, arg, PRESETS)
