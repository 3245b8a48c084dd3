"""The course's U-Net for semantic segmentation of multi-object `shapes`.

Command:
  python -m experiments.train --config=experiments/configs/unet_shapes.py --workdir=/tmp/unet

Trains `unet` (16 base filters) on `shapes/multi_64` per-pixel masks: 9 classes
(background + 8 shapes), 4,000 training scenes, 500 test scenes at 64x64; reports
`eval/mean_iou` (over the classes, from one confusion matrix over the test split),
`eval/pixel_accuracy` and `eval/iou/<class>`.
Measured (seed 0, default config, 2 CPU cores): eval/mean_iou 0.922, eval/pixel_accuracy
0.992 after 1,000 steps (8 epochs) in 734 s of training; 315 images/s at inference.
Presets: :test (3 steps, for the tests); :gpu, :tpu (bfloat16, bigger batch; docs/scale.md); :course (32 base filters, the course's width);
:dice (adds a Dice term with weight 1); :pets (catalog `oxford_iiit_pet` at 128x128,
3 classes: pet, background, border; prepare it where there is network).
"""

from cnn_lab.data.shapes import CLASSES
from cnn_lab.train.configs import apply_presets
from experiments.configs.shapes_base import shapes_config, shapes_presets


def _course(c):
  c.model.filters = 32


def _dice(c):
  c.segmentation.dice_weight = 1.0


def _pets(c):
  c.dataset.update(name="oxford_iiit_pet", image_size=128, cache=False, eval_split="")
  c.segmentation.update(num_classes=3, mask_key="segmentation_mask", mask_offset=-1,
                        class_names=("pet", "background", "border"))


PRESETS = shapes_presets(test_size=64, course=_course, dice=_dice, pets=_pets)


def get_config(arg=None):
  c = shapes_config(
      "segmentation", model=dict(name="unet", filters=16, dropout_rate=0.1), size=64,
      dataset=dict(name="shapes/multi_64"), batch_size=32, num_epochs=8.0,
      eval_every_steps=500,
      segmentation=dict(num_classes=len(CLASSES) + 1, vertical_flip=True,
                        class_names=("background", *CLASSES)))
  return apply_presets(c, arg, PRESETS)
