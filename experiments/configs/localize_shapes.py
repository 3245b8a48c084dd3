"""Classification with localization and landmarks (the course's `[pc, bx, by, bh, bw, c]`).

Command:
  python -m experiments.train --config=experiments/configs/localize_shapes.py --workdir=/tmp/localize

Trains `localizer` on the embedded `shapes/localize_64` (one object in 80% of the
64x64 scenes, none in 20%) with the presence, box, class and 5-landmark losses.
Reports `eval/iou50_accuracy` (box IoU > 0.5 on images with an object),
`eval/localization_accuracy` (and the right class), `eval/presence_accuracy` and
`eval/landmark_nme` (mean landmark error / sqrt(box area)).
Measured (seed 0, default config, 2 CPU cores): eval/iou50_accuracy 0.9988,
eval/localization_accuracy 0.9950, eval/presence_accuracy 1.0, eval/mean_iou 0.896,
eval/landmark_nme 0.075 after 1,395 steps (15 epochs) in 528 s of training.
Presets: :test (3 steps, for the tests); :gpu, :tpu (bfloat16, bigger batch; docs/scale.md); :nolandmarks (the box head alone).
"""

from cnn_lab.train.configs import apply_presets
from experiments.configs.shapes_base import shapes_config, shapes_presets


def _no_landmarks(c):
  c.localization.num_landmarks = 0


PRESETS = shapes_presets(test_size=64, nolandmarks=_no_landmarks)


def get_config(arg=None):
  c = shapes_config("localization", model=dict(name="localizer"), size=64,
                    dataset=dict(name="shapes/localize_64"), num_epochs=15.0,
                    localization=dict(num_landmarks=5))
  return apply_presets(c, arg, PRESETS)
