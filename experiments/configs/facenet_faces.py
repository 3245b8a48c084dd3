"""Face embeddings with the triplet loss (FaceNet) on the embedded `faces`.

Command:
  python -m experiments.train --config=experiments/configs/facenet_faces.py --workdir=/tmp/faces

Trains `face_embedder` (ResNet-20 with a 128-d L2-normalised head) on the 500
training identities of `faces/64` (12 photographs each, seen at 32x32), with online
semi-hard triplet mining over 16 identities x 4 photographs per batch, alpha 0.2.
Evaluates on the 300 held-out identities: thresholds are chosen on the 100 validation
identities; verification (accuracy, ROC AUC, EER, TAR at 0.1% FAR) on balanced pairs
of the 200 test identities; one-shot identification among 100 of them (one enrolled
photograph each) and rejection of the other 100 as strangers.
Measured (seed 0, default config, 2 CPU cores; 1,875 steps, 357 s from launch to end):
eval/verification_accuracy 0.991, ROC AUC 0.9991, EER 0.009, TAR at 0.1% FAR 0.875,
eval/one_shot_accuracy 0.976 among 100 identities, open-set accuracy 0.830 with 89.3% of
strangers rejected. The other objectives: `python -m experiments.face_objectives`.
Presets: :test (3 steps on `faces/32`, for the tests); :random, :batch_all, :batch_hard, :binary
(the other objectives); :gpu, :tpu (bfloat16, bigger batch; docs/scale.md).
"""

from cnn_lab.train.configs import apply_presets
from experiments.configs.shapes_base import shapes_config, shapes_presets


def _objective(name):
  def preset(c):
    c.metric.objective = name
  return preset


def _test(c):  # 3 steps, for the tests; batches of 4 identities x 4 faces, on faces/32
  c.dataset.name = "faces/32"  # the size the model sees, 4x cheaper to prepare than 64
  c.num_train_steps, c.batch_size, c.eval_batch_size = 3, 16, 200
  c.log_every_steps = c.eval_every_steps = c.checkpoint_every_steps = 3
  c.schedule.warmup_steps = 1
  c.metric.identities_per_batch = 4


PRESETS = {**shapes_presets(), "test": _test,
           **{name: _objective(name) for name in ("random", "batch_all", "batch_hard",
                                                  "binary")}}


def get_config(arg=None):
  c = shapes_config(
      "metric", model=dict(name="face_embedder", backbone="resnet20_cifar", dim=128),
      size=32, dataset=dict(name="faces/64"), num_epochs=20.0, eval_batch_size=200,
      eval_every_steps=1000, checkpoint_every_steps=1000)
  return apply_presets(c, arg, PRESETS)
