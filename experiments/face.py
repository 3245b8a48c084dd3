r"""Face verification and one-shot recognition with a trained embedding (`task: metric`).

  python -m experiments.face enroll --workdir=/tmp/faces --database=/tmp/db.npz \
      alice=alice.png bob=bob.jpg
  python -m experiments.face verify --workdir=/tmp/faces a.png b.png
  python -m experiments.face identify --workdir=/tmp/faces --database=/tmp/db.npz who.png
  python -m experiments.face enroll --workdir=/tmp/faces --database=/tmp/db.npz \
      --held_out=100    # one photograph of each of 100 held-out `faces` identities
  python -m experiments.face lfw --workdir=/tmp/faces --lfw_dir=DIR  # DIR/pairs.txt

Images are resized to the run's input and normalised as in training. `verify` prints
the distance and whether it is within the run's verification threshold; `identify`
prints the nearest enrolled name, or "not in the database" beyond the run's open-set
threshold (both chosen on validation identities and read from its `metrics.jsonl`;
`--threshold` overrides them).
`enroll` adds to (or creates) the database: names and embeddings in one `.npz`.
`lfw` runs Labeled Faces in the Wild's 10-fold pairs protocol on a local copy of the
original release (`cnn_lab.data.lfw`; nothing is downloaded).
"""

import os

import numpy as np
from absl import flags

from cnn_lab import paths
from cnn_lab.data import datasets
from cnn_lab.data.images import load_image
from cnn_lab.data.pipeline import Preprocess
from cnn_lab.errors import fail
from cnn_lab.eval.verification import identify, load_database, ten_fold_accuracy
from cnn_lab.train import launch
from cnn_lab.train.metrics import read_metrics
from cnn_lab.train.restore import embedder, load_run

flags.DEFINE_string("workdir", None, "A metric-learning run's workdir (experiments.train).")
flags.DEFINE_string("database", None, "Enrolled embeddings (.npz) for enroll / identify.")
flags.DEFINE_float("threshold", None, "Distance threshold (default: the run's own).")
flags.DEFINE_integer("held_out", 0, "enroll: also one photograph of each of this many "
                     "held-out identities of the run's dataset (named id_<label>).")
flags.DEFINE_string("lfw_dir", None, "lfw: the LFW release (ROOT/<Name>/<Name>_0001.jpg).")
flags.DEFINE_string("lfw_pairs", None, "lfw: its pairs.txt (default LFW_DIR/pairs.txt).")
flags.mark_flags_as_required(["workdir"])
FLAGS = flags.FLAGS
COMMANDS = ("enroll", "verify", "identify", "lfw")


class TrainedEmbedder:
  """A trained run's jitted embedding of uint8 images of any size."""

  def __init__(self, workdir: str):
    self.run = load_run(workdir)
    if self.run.config.task != "metric":
      raise fail("workdir", "a metric-learning run (task 'metric')",
                 f"task {self.run.config.task!r}")
    cfg = self.run.config.dataset
    self.preprocess = Preprocess.for_dataset(cfg)
    self._embed, self._state = embedder(self.run)
    model = self.run.model  # the task's dissimilarity: binary uses the pair classifier
    self.distance = self.run.task.distance(model.pair_weights[...], model.pair_bias[...])

  def __call__(self, images: list[np.ndarray]) -> np.ndarray:
    x = np.stack([self.preprocess.one({"image": im})["image"] for im in images])
    return np.asarray(self._embed(self._state, x))

  def threshold(self, key: str) -> float:
    """`--threshold`, else the run's last `eval/<key>`: `threshold` (verification) or
    `open_set_threshold` (identification), both chosen on validation identities."""
    if FLAGS.threshold is not None:
      if not np.isfinite(FLAGS.threshold):
        raise fail("threshold", "a finite distance", FLAGS.threshold)
      return FLAGS.threshold
    found = [r[f"eval/{key}"] for r in read_metrics(
        os.path.join(FLAGS.workdir, "metrics.jsonl")) if f"eval/{key}" in r]
    if not found or not np.isfinite(found[-1]):
      raise fail("threshold", f"a number (the run recorded {found[-1] if found else 'no'} "
                 f"eval/{key}: evaluate it first, or pass --threshold)", None)
    return float(found[-1])


def enroll(embed: TrainedEmbedder, pairs: list[str]) -> None:
  names, images = [], []
  for pair in pairs:
    name, sep, path = pair.partition("=")
    if not sep or not name:
      raise fail("enroll", "NAME=IMAGE_PATH pairs", pair)
    names.append(name)
    images.append(load_image(path))
  if FLAGS.held_out:
    cfg = embed.run.config.dataset
    source = datasets.evaluation_source(cfg)
    lo, hi = embed.run.task.gallery_identities
    seen = set()
    for i in range(len(source)):
      label = int(source[i]["label"])
      if lo <= label < hi and label not in seen and len(seen) < FLAGS.held_out:
        seen.add(label)
        names.append(f"id_{label}")
        images.append(source[i]["image"])
  if not images:
    raise fail("enroll", "NAME=IMAGE_PATH pairs or --held_out=N", "nothing")
  new = embed(images)
  old_names, old = (np.zeros(0, str), np.zeros((0, new.shape[1]), np.float32))
  if FLAGS.database and os.path.exists(FLAGS.database):
    old_names, old = load_database(FLAGS.database, new.shape[1])
  names = np.concatenate([old_names, np.asarray(names)])
  embeddings = np.concatenate([old, new])
  if not FLAGS.database:
    raise fail("database", "a path to write the enrolled embeddings to", None)
  tmp = FLAGS.database + ".tmp.npz"
  np.savez(tmp, names=names, embeddings=embeddings)
  paths.rename(tmp, FLAGS.database)
  print(f"enrolled {len(new)}; {len(names)} identities in {FLAGS.database}")


def evaluate_lfw(embed: TrainedEmbedder) -> None:
  from cnn_lab.data import lfw
  from cnn_lab.eval.verification import verification_metrics
  if not FLAGS.lfw_dir:
    raise fail("lfw_dir", "the directory of the LFW release", None)
  pairs, same, fold = lfw.read_pairs(FLAGS.lfw_pairs or os.path.join(FLAGS.lfw_dir,
                                                                      "pairs.txt"),
                                     FLAGS.lfw_dir)
  files = sorted({p for pair in pairs for p in pair})
  index = {p: k for k, p in enumerate(files)}
  emb = np.concatenate([embed([load_image(p) for p in files[i:i + 256]])
                        for i in range(0, len(files), 256)])
  d = embed.distance(emb, emb)
  distances = np.array([d[index[a], index[b]] for a, b in pairs])
  accuracy, error = ten_fold_accuracy(distances, same, fold)
  metrics = dict(verification_metrics(distances, same, np.inf))
  print(f"LFW, {len(pairs)} pairs in {len(set(fold))} folds: accuracy {accuracy:.4f} "
        f"+- {error:.4f}; ROC AUC {metrics['roc_auc']:.4f}, EER {metrics['eer']:.4f}")


def main(argv):
  if len(argv) < 2 or argv[1] not in COMMANDS:
    raise fail("command", f"one of {COMMANDS}", argv[1] if len(argv) > 1 else None)
  command, args = argv[1], argv[2:]
  embed = TrainedEmbedder(FLAGS.workdir)
  if command == "enroll":
    enroll(embed, args)
  elif command == "lfw":
    evaluate_lfw(embed)
  elif command == "verify":
    if len(args) != 2:
      raise fail("verify", "two image paths", args)
    a, b = embed([load_image(p) for p in args])
    distance = float(embed.distance(a[None], b[None])[0, 0])
    threshold = embed.threshold("threshold")
    verdict = "same person" if distance <= threshold else "different people"
    print(f"distance {distance:.4f} (threshold {threshold:.4f}): {verdict}")
  else:
    if not args:
      raise fail("identify", "at least one image path", args)
    queries = embed([load_image(p) for p in args])
    names, gallery = load_database(FLAGS.database, queries.shape[1])
    index = np.arange(len(names))
    found, distance = identify(queries, gallery, index, embed.threshold("open_set_threshold"),
                               embed.distance)
    for path, k, d in zip(args, found, distance):
      who = names[k] if k >= 0 else "not in the database"
      print(f"{path}: {who} (distance {d:.4f})")


if __name__ == "__main__":
  launch.run(main)
