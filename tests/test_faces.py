"""Faces: the embedded identities, the metric-learning losses against loop references,
and verification / identification metrics against scikit-learn and by hand."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnn_lab.eval import verification as V
from cnn_lab.losses import metric as M
from cnn_lab.losses import triplet_loss


def _batch(seed=0, p=3, k=3, d=4):
  rng = np.random.default_rng(seed)
  emb = rng.normal(size=(p * k, d)).astype(np.float32)
  emb /= np.linalg.norm(emb, axis=1, keepdims=True)
  return jnp.asarray(emb), jnp.repeat(jnp.arange(p), k)


def _d(a, b):
  return float(np.sum((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))


def test_triplet_loss_is_the_course_definition_summed():
  a, _ = _batch(0)
  p, _ = _batch(1)
  n, _ = _batch(2)
  expected = sum(max(_d(a[i], p[i]) - _d(a[i], n[i]) + 0.2, 0.0) for i in range(len(a)))
  np.testing.assert_allclose(triplet_loss(a, p, n), expected, rtol=1e-5)  # the package's
  np.testing.assert_allclose(M.triplet_loss(a, a, -a, alpha=0.5), 0.0)  # easy: no loss


def _reference_triplets(emb, labels, alpha):
  """Every (a, p, n) with its loss, straight from the definition."""
  labels = np.asarray(labels)
  out = []
  for a, p, n in itertools.product(range(len(labels)), repeat=3):
    if a != p and labels[a] == labels[p] and labels[n] != labels[a]:
      out.append((a, p, n, _d(emb[a], emb[p]), _d(emb[a], emb[n])))
  return out


def _jitted(loss):
  """`loss` jitted, as training runs it (op by op, each mining loss compiled ~50
  programs of its own)."""
  return jax.jit(loss, static_argnames="alpha")


@pytest.mark.parametrize("seed", range(3))
def test_mining_matches_loop_references(seed):
  emb, labels = _batch(seed)
  alpha = 0.5
  triplets = _reference_triplets(emb, labels, alpha)
  losses = [max(dap - dan + alpha, 0.0) for *_, dap, dan in triplets]
  positive = [x for x in losses if x > 1e-12]
  loss, _ = _jitted(M.batch_all_triplet_loss)(emb, labels, alpha=alpha)
  np.testing.assert_allclose(loss, sum(positive) / max(len(positive), 1), rtol=1e-4)

  hard = []
  for a in range(len(labels)):
    dap = max(t[3] for t in triplets if t[0] == a)
    dan = min(t[4] for t in triplets if t[0] == a)
    hard.append(max(dap - dan + alpha, 0.0))
  loss, _ = _jitted(M.batch_hard_triplet_loss)(emb, labels, alpha=alpha)
  np.testing.assert_allclose(loss, np.mean(hard), rtol=1e-4, atol=1e-6)

  semi = []
  for a, p in {(t[0], t[1]) for t in triplets}:
    rows = [t for t in triplets if t[0] == a and t[1] == p]
    dap = rows[0][3]
    farther = [t[4] for t in rows if t[4] > dap]
    dan = min(farther) if farther else min(t[4] for t in rows)
    semi.append(max(dap - dan + alpha, 0.0))
  loss, terms = _jitted(M.semi_hard_triplet_loss)(emb, labels, alpha=alpha)
  np.testing.assert_allclose(loss, np.mean(semi), rtol=1e-4, atol=1e-6)
  assert 0 <= float(terms["semi_hard"]) <= 1


def test_random_triplets_are_keyed_and_valid():
  emb, labels = _batch(0, p=3, k=2)
  random_triplet_loss = _jitted(M.random_triplet_loss)
  a, _ = random_triplet_loss(emb, labels, key=jax.random.key(0))
  b, _ = random_triplet_loss(emb, labels, key=jax.random.key(0))
  c, _ = random_triplet_loss(emb, labels, key=jax.random.key(1))
  assert float(a) == float(b) and float(a) != float(c)  # anchors have 4 negatives each
  # two identities, each image of one identity at one point: every draw gives the same
  # triplets, d(a, p) = 0 and d(a, n) = |e0 - e2|^2
  e0, e2 = jnp.array([1.0, 0.0]), jnp.array([0.8, 0.1])
  emb, labels = jnp.stack([e0, e0, e2, e2]), jnp.array([0, 0, 1, 1])
  loss, _ = random_triplet_loss(emb, labels, alpha=0.2, key=jax.random.key(2))
  np.testing.assert_allclose(loss, 0.2 - _d(e0, e2), rtol=1e-5)


def test_mining_losses_jit_and_have_gradients():
  emb, labels = _batch(0)
  for name, fn in M.MINING.items():
    kwargs = {"key": jax.random.key(0)} if name == "random" else {}
    g = jax.jit(jax.grad(lambda e: fn(e, labels, 0.2, **kwargs)[0]))(emb)
    assert g.shape == emb.shape and bool(jnp.all(jnp.isfinite(g))), name


def test_binary_variant():
  f_i, _ = _batch(0)
  logits = M.pair_logits(f_i, f_i, jnp.full(4, -5.0), 3.0)
  np.testing.assert_allclose(logits, 3.0)  # identical embeddings: only the bias
  same = jnp.array([1, 0, 1])
  loss, terms = M.binary_pair_loss(jnp.array([20.0, -20.0, 20.0]), same)
  assert float(loss) < 1e-6 and float(terms["pair_accuracy"]) == 1.0


def test_bad_input_names_the_argument():
  emb, labels = _batch(0)
  with pytest.raises(ValueError, match=r"^negative: expected the shape of anchor \(9, 4\)"):
    M.triplet_loss(emb, emb, emb[:, :3])
  with pytest.raises(ValueError, match=r"^anchor: expected embeddings \[N, D\]"):
    M.triplet_loss(emb[0], emb[0], emb[0])
  with pytest.raises(ValueError, match=r"^labels: expected at least 2 identities, each "
                     r"with at least 2 images.*1 with one image: \[3\]"):
    M.batch_hard_triplet_loss(emb[:7], jnp.array([0, 0, 1, 1, 2, 2, 3]))
  with pytest.raises(ValueError, match=r"^weights: expected shape \(4,\)"):
    M.pair_logits(emb, emb, jnp.ones(3), 0.0)


def test_roc_auc_eer_and_tar_against_sklearn_and_by_hand():
  from sklearn.metrics import roc_auc_score, roc_curve
  rng = np.random.default_rng(0)
  same = rng.uniform(size=400) < 0.5
  distances = np.where(same, rng.normal(0.6, 0.3, 400), rng.normal(1.4, 0.3, 400))
  distances[:20] = np.round(distances[:20], 1)  # some ties
  metrics = dict(V.verification_metrics(distances, same, V.best_threshold(distances, same)))
  np.testing.assert_allclose(metrics["roc_auc"], roc_auc_score(same, -distances), rtol=1e-12)
  fpr, tpr, _ = roc_curve(same, -distances, drop_intermediate=False)
  far, tar, _ = V.roc(distances, same)
  np.testing.assert_allclose(far, fpr, atol=1e-12)
  np.testing.assert_allclose(tar, tpr, atol=1e-12)
  accuracies = [np.mean((distances <= t) == same) for t in np.r_[distances, -1.0]]
  assert metrics["accuracy"] == pytest.approx(max(accuracies))
  assert 0 < metrics["eer"] < 0.2 and 0 <= metrics["tar_at_far_0.001"] <= 1
  # separable pairs: perfect
  perfect = dict(V.verification_metrics([0.1, 0.2, 0.9, 1.0], [1, 1, 0, 0], 0.5))
  assert perfect == {"accuracy": 1.0, "roc_auc": 1.0, "eer": 0.0, "tar_at_far_0.001": 1.0}
  with pytest.raises(ValueError, match="same: expected both same-identity and different"):
    V.best_threshold([0.1, 0.2], [1, 1])


def test_identify_one_shot_and_strangers():
  gallery = np.eye(3)
  queries = np.array([[0.9, 0.1, 0.0], [0.0, 0.0, 1.0], [0.577, 0.577, 0.577]])
  labels, dist = V.identify(queries, gallery, [10, 11, 12], threshold=0.3)
  np.testing.assert_array_equal(labels, [10, 12, -1])  # the third is nobody we know
  assert dist[1] == pytest.approx(0.0)
  with pytest.raises(ValueError, match=r"^gallery: expected a database of at least one"):
    V.identify(queries, np.zeros((0, 3)), [], 0.3)
  with pytest.raises(ValueError, match=r"^queries: expected embeddings \[Q, 3\]"):
    V.identify(queries[:, :2], gallery, [10, 11, 12], 0.3)


def test_all_pairs_balance():
  labels = np.repeat(np.arange(5), 3)
  i, j, same = V.all_pairs(labels)
  assert same.sum() == 5 * 3 and (~same).sum() == 15 and np.all(i < j)
  assert np.array_equal(labels[i] == labels[j], same)


def test_identity_batches_are_p_by_k_reproducible_and_checked():
  from cnn_lab.data.order import IdentityBatches, PairBatches
  labels = np.r_[np.repeat(np.arange(6), 5), 99]  # identity 99 has one image: never drawn
  order = IdentityBatches(labels, identities=3, images=4, seed=0)
  batch = order(7)
  assert batch.shape == (12,) and np.array_equal(batch, order(7))
  groups = labels[batch].reshape(3, 4)
  assert np.all(groups == groups[:, :1]) and len(set(groups[:, 0])) == 3
  assert 99 not in labels[np.concatenate([order(i) for i in range(50)])]
  assert len(set(batch[:4])) == 4  # five images: no repeats within an identity
  with pytest.raises(ValueError, match="images: expected at least 2 images per identity"):
    IdentityBatches(labels, 3, 1, 0)
  with pytest.raises(ValueError, match=r"identities: expected 2 to 6 identities per batch"):
    IdentityBatches(labels, 7, 2, 0)
  pairs = PairBatches(labels, 8, seed=1)(3).reshape(4, 2)
  same = labels[pairs[:, 0]] == labels[pairs[:, 1]]
  np.testing.assert_array_equal(same, [True, True, False, False])
  assert np.all(pairs[:2, 0] != pairs[:2, 1])
  with pytest.raises(ValueError, match="batch: expected a multiple of 4"):
    PairBatches(labels, 6, 0)


def test_evaluate_faces_on_perfect_clusters():
  rng = np.random.default_rng(0)
  labels = np.repeat(np.arange(500, 800), 4)
  centres = rng.normal(size=(800, 16))
  emb = centres[labels] + rng.normal(0, 0.01, (len(labels), 16))
  out = dict(V.evaluate_faces(emb, labels, validation=(500, 600), gallery=(600, 700),
                              strangers=(700, 800)))
  assert out["verification_accuracy"] == 1.0 and out["verification_roc_auc"] == 1.0
  assert out["one_shot_accuracy"] == 1.0 and out["one_shot_identities"] == 100
  assert out["open_set_accuracy"] == 1.0 and out["stranger_rejection"] == 1.0


def _check_faces_builder():
  """Disjoint identities per split, >= 500 in all, varied photographs of each."""
  from cnn_lab.data import datasets, faces
  counts = {}
  for split in ("train", "validation", "test"):
    source = datasets.load_source("faces/32", split)  # the size the :test preset trains on
    labels = np.array([source[i]["label"] for i in range(len(source))])
    counts[split] = set(np.unique(labels).tolist())
    assert source[0]["image"].shape == (32, 32, 3) and source[0]["image"].dtype == np.uint8
    per = np.bincount(labels)[np.unique(labels)]
    assert np.all(per == faces.SPLITS[split][2]) and counts[split] == set(
        faces.split_identities(split))
  assert not (counts["train"] & counts["validation"] or counts["train"] & counts["test"] or
              counts["validation"] & counts["test"])
  assert len(counts["train"]) + len(counts["validation"]) + len(counts["test"]) >= 500
  assert datasets.spec("faces/64").num_classes == 500
  # one identity, two photographs: same parameters, different pose, light, background
  person = faces.identity(0, 3)
  a = faces.render(np.random.default_rng(1), person, 64)
  b = faces.render(np.random.default_rng(2), person, 64)
  assert np.abs(a.astype(int) - b.astype(int)).mean() > 10
  np.testing.assert_array_equal(a, faces.render(np.random.default_rng(1), person, 64))
  assert faces.identity(0, 3) == person and faces.identity(0, 4) != person


def test_faces_build_train_and_the_cli_enrolls_verifies_identifies(tmp_path):
  """One test builds `faces` (once per session worker): the builder, the :test config
  through the launcher, then the CLI on its workdir."""
  _check_faces_builder()
  import os
  import subprocess
  import sys

  from PIL import Image

  from cnn_lab.data import faces
  from cnn_lab.train.launch import load_config
  from cnn_lab.train.loop import train_and_evaluate
  from tests.helpers import ROOT
  run = tmp_path / "run"
  config = load_config(os.path.join(ROOT, "experiments", "configs", "facenet_faces.py:test"))
  result = train_and_evaluate(config, str(run))
  assert result["step"] == 3 and 0 <= result["eval/verification_accuracy"] <= 1
  assert result["eval/one_shot_identities"] == 100
  for name, (person, seed) in {"a1": (600, 1), "a2": (600, 2), "b1": (601, 1)}.items():
    Image.fromarray(faces.render(np.random.default_rng(seed), faces.identity(0, person),
                                 64)).save(tmp_path / f"{name}.png")
  db = tmp_path / "db.npz"

  def face(*args):
    return subprocess.run([sys.executable, "-m", "experiments.face", f"--workdir={run}",
                           *map(str, args)], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)

  out = face("enroll", f"--database={db}", f"alice={tmp_path / 'a1.png'}", "--held_out=3")
  assert out.returncode == 0 and "4 identities" in out.stdout, out.stderr[-2000:]
  out = face("verify", tmp_path / "a1.png", tmp_path / "a2.png")
  assert out.returncode == 0 and "distance" in out.stdout, out.stderr[-2000:]
  out = face("identify", f"--database={db}", "--threshold=100", tmp_path / "b1.png")
  assert out.returncode == 0 and "b1.png: " in out.stdout, out.stderr[-2000:]
  root = _mock_lfw(tmp_path / "lfw")
  out = face("lfw", f"--lfw_dir={root}")
  assert out.returncode == 0 and "LFW, 8 pairs in 2 folds: accuracy" in out.stdout, \
      out.stderr[-2000:]


LFW_PAIRS = """2 2
A 1 2
B 1 2
A 1 B 1
B 2 C 1
A 2 3
A 1 3
A 3 C 1
B 1 C 1
"""


def _mock_lfw(root):
  """LFW's layout and pairs.txt, with procedural faces standing in for the photographs."""
  from PIL import Image

  from cnn_lab.data import faces
  for name, person, count in (("A", 600, 3), ("B", 601, 2), ("C", 602, 1)):
    (root / name).mkdir(parents=True)
    for n in range(1, count + 1):
      image = faces.render(np.random.default_rng(n), faces.identity(0, person), 96)
      Image.fromarray(image).save(root / name / f"{name}_{n:04d}.jpg")
  (root / "pairs.txt").write_text(LFW_PAIRS)
  return root


def test_face_database_errors(tmp_path):
  from cnn_lab.eval.verification import load_database
  np.savez(tmp_path / "empty.npz", names=np.zeros(0, str), embeddings=np.zeros((0, 128)))
  with pytest.raises(ValueError, match="database: expected at least one enrolled identity"):
    load_database(str(tmp_path / "empty.npz"), 128)
  np.savez(tmp_path / "other.npz", names=np.array(["x"]), embeddings=np.zeros((1, 64)))
  with pytest.raises(ValueError, match=r"database: expected embeddings \[G, 128\] of floats from "
                     r"this run's model, received \"float64 \(1, 64\) in '.*other.npz'"):
    load_database(str(tmp_path / "other.npz"), 128)
  with pytest.raises(ValueError, match="database: expected an enrolled database"):
    load_database(str(tmp_path / "missing.npz"), 128)


def test_lfw_pairs_protocol(tmp_path):
  from cnn_lab.data import lfw
  root = tmp_path / "lfw"
  (root).mkdir()
  (root / "pairs.txt").write_text(LFW_PAIRS)
  pairs, same, fold = lfw.read_pairs(str(root / "pairs.txt"), str(root))
  assert pairs[0] == (str(root / "A" / "A_0001.jpg"), str(root / "A" / "A_0002.jpg"))
  assert pairs[2] == (str(root / "A" / "A_0001.jpg"), str(root / "B" / "B_0001.jpg"))
  np.testing.assert_array_equal(same, [1, 1, 0, 0, 1, 1, 0, 0])
  np.testing.assert_array_equal(fold, [0, 0, 0, 0, 1, 1, 1, 1])
  accuracy, _ = V.ten_fold_accuracy(np.where(same, 0.2, 0.9), same, fold)
  assert accuracy == 1.0
  for text, message in (("", "a first line 'folds pairs_per_fold'"),
                        ("2 2\nA 1 2\n", "8 pair lines"),
                        ("1 1\nA 1\nA 1 B 2\n", "lines 'name i j' or 'name1 i name2 j'")):
    (root / "bad.txt").write_text(text)
    with pytest.raises(ValueError, match=f"pairs_file: expected {message}"):
      lfw.read_pairs(str(root / "bad.txt"), str(root))
  with pytest.raises(ValueError, match="pairs_file: expected LFW's pairs.txt"):
    lfw.read_pairs(str(root / "missing.txt"), str(root))


def test_binary_objective_distance_is_minus_the_pair_logit():
  from cnn_lab.train.tasks.metric import MetricLearning
  rng = np.random.default_rng(0)
  a, c, w = rng.normal(size=(70, 8)), rng.normal(size=(5, 8)), rng.normal(size=8)
  d = MetricLearning(objective="binary").distance(w, 0.5)(a, c)  # 70 rows: two blocks
  logits = M.pair_logits(jnp.asarray(np.repeat(a, 5, 0), jnp.float32),
                         jnp.asarray(np.tile(c, (70, 1)), jnp.float32),
                         jnp.asarray(w, jnp.float32), 0.5)
  np.testing.assert_allclose(d, -np.asarray(logits).reshape(70, 5), rtol=1e-5, atol=1e-5)
  assert MetricLearning().distance() is V.squared_distances
  with pytest.raises(ValueError, match="metric.objective: expected one of"):
    MetricLearning(objective="contrastive")
