"""YOLO's anchors, targets, decoding, loss and inference; localization; sliding windows."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from cnn_lab.data.augment import random_flips
from cnn_lab.data.pipeline import PadObjects
from cnn_lab.detection import localization, yolo
from cnn_lab.models import create_model

ANCHORS = jnp.array([[0.1, 0.1], [0.2, 0.4], [0.4, 0.2]])


def test_kmeans_recovers_known_shapes():
  rng = np.random.default_rng(0)
  shapes = np.array([[0.1, 0.1], [0.2, 0.4], [0.4, 0.2]])
  wh = shapes[rng.integers(0, 3, 300)] * rng.uniform(0.97, 1.03, (300, 2))
  anchors, mean_iou = yolo.kmeans_anchors(wh, 3, seed=1)
  np.testing.assert_allclose(np.sort(anchors, 0), np.sort(shapes, 0), rtol=0.02)
  assert mean_iou > 0.95
  with pytest.raises(ValueError, match="wh: expected at least k=5 boxes"):
    yolo.kmeans_anchors(wh[:3], 5)


def test_targets_go_to_the_centre_cell_and_best_anchor():
  boxes = jnp.array([[0.05, 0.05, 0.15, 0.15],   # centre (0.1, 0.1): cell (0, 0), square
                     [0.5, 0.3, 0.7, 0.7],      # centre (0.6, 0.5): row 2, col 2, tall
                     [0.52, 0.32, 0.72, 0.72],  # same cell and anchor: loses to the first
                     [0.0, 0.0, 0.0, 0.0]])     # padding
  classes = jnp.array([3, 1, 2, -1])
  t = jax.jit(yolo.encode_targets, static_argnums=3)(boxes, classes, ANCHORS, 4)
  assert t["object"].shape == (4, 4, 3) and float(t["object"].sum()) == 2
  assert float(t["object"][0, 0, 0]) == 1 and float(t["object"][2, 2, 1]) == 1
  np.testing.assert_allclose(t["box"][2, 2, 1], boxes[1])
  assert int(t["class"][0, 0, 0]) == 3 and int(t["class"][2, 2, 1]) == 1


# Jitted, as training runs them: run op by op, each of their ~100 operations compiles a
# program of its own (the two loss tests took 16 s that way).
yolo_loss = jax.jit(yolo.yolo_loss, static_argnums=4)


@jax.jit
def yolo_loss_grad(pred, boxes, classes):
  return jax.grad(lambda p: yolo.yolo_loss(p, boxes, classes, ANCHORS,
                                           yolo.YoloLossWeights())[0])(pred)


@functools.partial(jax.jit, static_argnums=(3, 4))
def perfect_predictions(boxes, classes, anchors, grid, num_classes):
  """Raw predictions that decode exactly to the targets, confident everywhere."""
  t = yolo.encode_targets(boxes, classes, anchors, grid)
  rows, cols = jnp.meshgrid(jnp.arange(grid), jnp.arange(grid), indexing="ij")
  cx = (t["box"][..., 0] + t["box"][..., 2]) / 2 * grid - cols[..., None]
  cy = (t["box"][..., 1] + t["box"][..., 3]) / 2 * grid - rows[..., None]
  w = jnp.where(t["object"] > 0, t["box"][..., 2] - t["box"][..., 0], anchors[:, 0])
  h = jnp.where(t["object"] > 0, t["box"][..., 3] - t["box"][..., 1], anchors[:, 1])
  logit = lambda p: jnp.log(p) - jnp.log1p(-p)
  clip = lambda p: jnp.clip(p, 1e-4, 1 - 1e-4)
  return jnp.concatenate([
      jnp.stack([logit(clip(cx)), logit(clip(cy)), jnp.log(w / anchors[:, 0]),
                 jnp.log(h / anchors[:, 1]), jnp.where(t["object"] > 0, 12.0, -12.0)], -1),
      12.0 * jax.nn.one_hot(t["class"], num_classes)], -1)


def test_decode_inverts_the_targets_and_the_loss_is_near_zero():
  boxes = jnp.array([[0.05, 0.05, 0.15, 0.15], [0.5, 0.3, 0.7, 0.7], [0, 0, 0, 0.0]])
  classes = jnp.array([3, 1, -1])
  pred = perfect_predictions(boxes, classes, ANCHORS, 4, 5)
  decoded, _, _ = jax.jit(yolo.decode)(pred, ANCHORS)
  np.testing.assert_allclose(decoded[0, 0, 0], boxes[0], atol=5e-5)  # logit clipped
  np.testing.assert_allclose(decoded[2, 2, 1], boxes[1], atol=5e-5)
  loss, terms = yolo_loss(pred, boxes, classes, ANCHORS, yolo.YoloLossWeights())
  assert float(terms["coord"]) < 1e-6 and float(loss) < 1e-3
  assert np.all(np.isfinite(yolo_loss_grad(pred, boxes, classes)))
  # No objects at all: only the no-object term remains.
  _, empty = yolo_loss(pred, boxes, jnp.array([-1, -1, -1]), ANCHORS, yolo.YoloLossWeights())
  assert float(empty["coord"]) == float(empty["object"]) == float(empty["classes"]) == 0


def test_ignore_threshold_spares_predictions_overlapping_an_object():
  boxes, classes = jnp.array([[0.05, 0.05, 0.15, 0.15]]), jnp.array([0])
  pred = perfect_predictions(boxes, classes, ANCHORS, 4, 2)
  # Another anchor in the same cell predicts the same box confidently.
  pred = pred.at[0, 0, 1, :4].set(pred[0, 0, 0, :4])
  pred = pred.at[0, 0, 1, 2:4].set(jnp.log(ANCHORS[0] / ANCHORS[1]))
  pred = pred.at[0, 0, 1, 4].set(12.0)
  spare = yolo.YoloLossWeights(ignore_iou=0.5)
  strict = yolo.YoloLossWeights(ignore_iou=1.0)
  assert float(yolo_loss(pred, boxes, classes, ANCHORS, spare)[1]["no_object"]) < 1e-3
  assert float(yolo_loss(pred, boxes, classes, ANCHORS, strict)[1]["no_object"]) > 10


def test_postprocess_returns_the_objects_once_jitted_and_vmapped():
  boxes = jnp.array([[0.05, 0.05, 0.15, 0.15], [0.5, 0.3, 0.7, 0.7], [0, 0, 0, 0.0]])
  classes = jnp.array([3, 1, -1])
  pred = perfect_predictions(boxes, classes, ANCHORS, 4, 5)
  post = yolo.PostProcess(score_threshold=0.5, max_detections=4)
  out = jax.jit(jax.vmap(post, in_axes=(0, None)))(jnp.stack([pred, pred]), ANCHORS)
  assert out["boxes"].shape == (2, 4, 4)
  assert [int(c) for c in out["count"]] == [2, 2]
  np.testing.assert_array_equal(out["classes"][0], [3, 1, -1, -1])
  np.testing.assert_allclose(out["boxes"][0, :2], boxes[:2], atol=5e-5)
  np.testing.assert_array_equal(out["scores"][0, 2:], [0, 0])


def test_localization_loss_counts_box_and_class_only_with_an_object():
  targets = localization.Targets(jnp.array([[0.2, 0.2, 0.6, 0.8], [0, 0, 0, 0.0]]),
                                 jnp.array([2, -1]), jnp.full((2, 5, 2), 0.5))
  out = jnp.zeros((2, 5 + 4 + 10))
  out = out.at[0, 0].set(20.0).at[1, 0].set(-20.0)
  out = out.at[0, 1:5].set(localization.course_box(targets.boxes[0]))
  out = out.at[0, 5 + 2].set(30.0).at[:, 9:].set(0.5)
  out = out.at[1, 1:9].set(123.0)  # garbage where there is no object: not counted
  terms = jax.jit(localization.localization_loss, static_argnums=(2, 3))(out, targets, 4, 5)
  for name in ("presence", "box", "classes", "landmarks"):
    assert float(terms[name]) < 1e-6, name
  sums = jax.jit(localization.eval_sums, static_argnums=(3, 4))(out, targets,
                                                                jnp.array([True, True]), 4, 5)
  assert float(sums["iou50_and_class"]) == 1 and float(sums["presence_correct"]) == 2
  assert float(sums["nme"]) < 1e-6


def test_sliding_window_net_has_the_lecture_shapes_and_equals_the_naive_scan():
  net = create_model("sliding_window_net", rngs=nnx.Rngs(0), num_classes=4)
  conv = net.to_convolutional()
  assert net(jnp.ones((1, 14, 14, 3))).shape == (1, 4)
  for size, out in ((14, 1), (16, 2), (28, 8)):
    assert conv(jnp.ones((1, size, size, 3))).shape == (1, out, out, 4)
  image = jax.random.normal(jax.random.key(1), (1, 28, 28, 3))
  dense = conv(image)[0]
  for i in range(8):
    for j in range(8):
      window = image[:, 2 * i:2 * i + 14, 2 * j:2 * j + 14]
      np.testing.assert_allclose(dense[i, j], net(window)[0], rtol=1e-4, atol=1e-4)


def test_flips_move_boxes_with_the_pixels():
  image = np.zeros((1, 16, 16, 1), np.float32)
  image[0, 2:6, 1:9] = 1.0  # rows 2..5, cols 1..8 -> box x 1/16..9/16, y 2/16..6/16
  boxes = jnp.array([[[1, 2, 9, 6]]], jnp.float32) / 16
  for seed in range(6):
    flipped, moved, _ = random_flips(jnp.asarray(image), jax.random.key(seed), boxes=boxes,
                                     horizontal=True, vertical=True)
    ys, xs = np.nonzero(np.asarray(flipped)[0, ..., 0])
    np.testing.assert_allclose(moved[0, 0] * 16, [xs.min(), ys.min(), xs.max() + 1,
                                                  ys.max() + 1], atol=1e-5)


def test_pad_objects_orders_coordinates_and_refuses_overflow():
  record = {"image": np.zeros((4, 4, 3)), "objects": {
      "bbox": [np.array([0.1, 0.2, 0.3, 0.4])], "label": [5],
      "landmarks": [np.tile([[0.1, 0.2]], (5, 1))]}}
  out = PadObjects(3, 5)(record)
  np.testing.assert_allclose(out["boxes"][0], [0.2, 0.1, 0.4, 0.3])
  np.testing.assert_array_equal(out["classes"], [5, -1, -1])
  np.testing.assert_allclose(out["landmarks"][0, 0], [0.2, 0.1])
  with pytest.raises(ValueError, match="max_objects: expected >= the 1 objects"):
    PadObjects(0)(record)


@pytest.mark.parametrize("config_name, headline", [("yolo_shapes", "eval/voc_mAP50"),
                                                   ("localize_shapes", "eval/iou50_accuracy")])
def test_detection_configs_train_and_draw(config_name, headline, tmp_path):
  """The detection tasks through the one launcher (:test presets), then `experiments.detect` on the
  workdir: boxes printed and drawn."""
  import os
  import subprocess
  import sys

  from cnn_lab.train.launch import load_config
  from cnn_lab.train.loop import train_and_evaluate
  from tests.helpers import ROOT
  config = load_config(os.path.join(ROOT, "experiments", "configs", f"{config_name}.py:test"))
  result = train_and_evaluate(config, str(tmp_path))
  assert result["step"] == 3 and 0.0 <= result[headline] <= 1.0
  assert os.path.exists(tmp_path / "curves.png") and os.path.exists(tmp_path / "task.json")
  out = subprocess.run([sys.executable, "-m", "experiments.detect", f"--workdir={tmp_path}",
                        "--examples=2", "--min_score=0", "--time_batch=1"], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)  # batch 1: as drawn
  assert out.returncode == 0, out.stderr[-2000:]
  assert "example_000:" in out.stdout and "images/s" in out.stdout
  assert os.path.exists(tmp_path / "detections" / "grid.png")


def test_detect_refuses_bad_images_and_workdirs(tmp_path):
  from cnn_lab.data.images import load_image
  from cnn_lab.train.restore import load_run
  bad = tmp_path / "broken.png"
  bad.write_bytes(b"not a png")
  with pytest.raises(ValueError, match="image: expected a readable image file"):
    load_image(str(bad))
  with pytest.raises(ValueError, match="image: expected an image file or one of"):
    load_image(str(tmp_path / "missing.jpg"))
  assert load_image("chelsea").shape == (300, 451, 3)
  with pytest.raises(ValueError, match="workdir: expected a training workdir"):
    load_run(str(tmp_path))


def test_sliding_windows_experiment_prints_and_saves(tmp_path):
  import json
  import os
  import subprocess
  import sys

  from tests.helpers import ROOT
  out = subprocess.run([sys.executable, "-m", "experiments.sliding_windows", "--steps=5",
                        "--scenes=4", f"--out={tmp_path}"], cwd=ROOT, capture_output=True,
                       text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-2000:]
  assert "convolutional: one pass" in out.stdout
  rows = json.loads((tmp_path / "results.json").read_text())["rows"]
  assert len(rows) == 4 and all(r["max_abs_diff"] < 1e-4 for r in rows)
  assert os.path.exists(tmp_path / "scan.png")


def test_compare_detectors_trains_times_and_draws_the_two_stage_detector(tmp_path):
  """Faster R-CNN (:test preset) through compare_detectors: its training launch (a warm
  one: the session's data and compilation cache), the table, the figure of its
  detections (`restore.detector`, which `experiments.detect` uses for every detector;
  detect's own drawing and timing are tested above on YOLO and the localizer). The
  timed batch has the drawn one's size (6 scenes), so the detector compiles once."""
  import json
  import os
  import subprocess
  import sys

  from tests.helpers import ROOT
  out = subprocess.run([sys.executable, "-m", "experiments.compare_detectors",
                        f"--workdir={tmp_path / 'runs'}", f"--out={tmp_path / 'out'}",
                        "--detectors=faster_rcnn_shapes", "--preset=test",
                        "--time_batch=6", "--rounds=1", "--nofresh_launch"], cwd=ROOT,
                       capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  assert "faster_rcnn_shapes" in out.stdout
  with open(tmp_path / "out" / "results.json") as f:
    rows = json.load(f)["rows"]
  assert [r["model"] for r in rows] == ["faster_rcnn (RoIAlign)"]
  assert all(r["steps"] == 3 and r["images_per_s"] > 0 and 0 <= r["coco_mAP"] <= 1
             for r in rows)
  assert os.path.exists(tmp_path / "out" / "detections.png")


def test_rcnn_experiment_prints_and_saves(tmp_path):
  import json
  import subprocess
  import sys

  from tests.helpers import ROOT
  out = subprocess.run([sys.executable, "-m", "experiments.rcnn", "--train_images=20",
                        "--test_images=6", "--steps=20", f"--out={tmp_path}"], cwd=ROOT,
                       capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  assert "R-CNN (selective search + cnn_example)" in out.stdout
  with open(tmp_path / "results.json") as f:
    result = json.load(f)
  assert result["recall50"] > 0.9 and result["crops"] > 100
  assert (tmp_path / "detections.png").exists()
