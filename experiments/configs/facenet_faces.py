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
Presets: :test (3 steps, for the tests); :random, :batch_all, :batch_hard, :binary
(the other objectives); :gpu, :tpu (bfloat16, bigger batch; docs/scale.md).
"""

import ml_collections

from experiments.configs.shapes_base import apply_presets, shapes_config


def _objective(name):
  def preset(c):
    c.metric.objective = name
  return preset


def get_config(arg=None):
  c = shapes_config("face_embedder", 32, batch_size=64, epochs=20.0, learning_rate=2e-3,
                    test_size=32, backbone="resnet20_cifar", dim=128)
  c.task = "metric"
  c.dataset.name = "faces/64"
  c.dataset.image_size = 32
  c.eval_batch_size = 200
  del c.augment, c.loss  # classification's
  c.metric = ml_collections.ConfigDict(dict(
      objective="semi_hard", alpha=0.2, identities_per_batch=16, horizontal_flip=True,
      validation_identities=(500, 600), gallery_identities=(600, 700),
      stranger_identities=(700, 800)))
  c.eval_every_steps = 1000
  c.checkpoint_every_steps = 1000
  presets = {name: _objective(name) for name in ("random", "batch_all", "batch_hard",
                                                   "binary")}
  c = apply_presets(c, arg, presets)
  if "test" in (arg or "").split(","):  # the tests' preset, on the faces all the same
    c.dataset.name, c.dataset.image_size = "faces/64", 32
    c.batch_size, c.metric.identities_per_batch = 16, 4
  return c
