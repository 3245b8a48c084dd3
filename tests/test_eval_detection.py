"""Detection metrics against pycocotools and the VOC devkit's algorithm."""

import contextlib
import io

import numpy as np
import pytest

from cnn_lab.eval import average_precisions, evaluate_detections
from cnn_lab.eval.detection import COCO_THRESHOLDS, pairwise_iou


def random_set(seed, images=30, classes=3):
  """Ground truth and noisy detections (jittered copies, misses and false alarms)."""
  rng = np.random.default_rng(seed)
  dets, gts = [], []
  for _ in range(images):
    m = rng.integers(0, 5)
    xy = rng.uniform(0, 80, (m, 2))
    gt = np.concatenate([xy, xy + rng.uniform(5, 30, (m, 2))], 1)
    gt_cls = rng.integers(0, classes, m)
    keep = rng.uniform(size=m) < 0.8
    jitter = gt[keep] + rng.normal(0, 3, (keep.sum(), 4))
    jitter[:, 2:] = np.maximum(jitter[:, 2:], jitter[:, :2] + 1)
    extra = rng.integers(0, 3)
    fxy = rng.uniform(0, 80, (extra, 2))
    false = np.concatenate([fxy, fxy + rng.uniform(5, 30, (extra, 2))], 1)
    boxes = np.concatenate([jitter, false, jitter[:1] + 1.5])  # a duplicate too
    classes_ = np.concatenate([gt_cls[keep], rng.integers(0, classes, extra),
                               gt_cls[keep][:1]])
    scores = np.round(rng.uniform(0, 1, len(boxes)), 2)  # ties across images
    dets.append({"boxes": boxes, "scores": scores, "classes": classes_})
    gts.append({"boxes": gt, "classes": gt_cls})
  return dets, gts


def pycocotools_stats(dets, gts, classes):
  from pycocotools.coco import COCO
  from pycocotools.cocoeval import COCOeval
  xywh = lambda b: [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])]
  images, annotations, results = [], [], []
  for i, (d, g) in enumerate(zip(dets, gts)):
    images.append({"id": i})
    for b, c in zip(g["boxes"], g["classes"]):
      annotations.append({"id": len(annotations) + 1, "image_id": i, "category_id": int(c),
                          "bbox": xywh(b), "area": float((b[2] - b[0]) * (b[3] - b[1])),
                          "iscrowd": 0})
    for b, s, c in zip(d["boxes"], d["scores"], d["classes"]):
      results.append({"image_id": i, "category_id": int(c), "bbox": xywh(b),
                      "score": float(s)})
  with contextlib.redirect_stdout(io.StringIO()):
    coco = COCO()
    coco.dataset = {"images": images, "annotations": annotations,
                    "categories": [{"id": c} for c in range(classes)]}
    coco.createIndex()
    evaluator = COCOeval(coco, coco.loadRes(results), "bbox")
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
  return evaluator.stats


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_coco_map_equals_pycocotools(seed):
  pytest.importorskip("pycocotools")
  dets, gts = random_set(seed)
  stats = pycocotools_stats(dets, gts, 3)
  ours = dict(evaluate_detections(dets, gts, 3))
  np.testing.assert_allclose(
      [ours["coco_mAP"], ours["coco_AP50"], ours["coco_AP75"]], stats[:3], atol=1e-12)


def voc_devkit_ap(dets, gts, cls, threshold=0.5):
  """The devkit's voc_eval, transcribed (without its +1 pixel convention)."""
  gt = {i: (g["boxes"][g["classes"] == cls], np.zeros((g["classes"] == cls).sum(), bool))
        for i, g in enumerate(gts)}
  npos = sum(len(b) for b, _ in gt.values())
  entries = [(s, i, b) for i, d in enumerate(dets)
             for b, s, c in zip(d["boxes"], d["scores"], d["classes"]) if c == cls]
  entries.sort(key=lambda e: -e[0])  # stable, like the devkit's argsort on -confidence
  tp, fp = np.zeros(len(entries)), np.zeros(len(entries))
  for k, (_, i, b) in enumerate(entries):
    boxes, det = gt[i]
    ov = pairwise_iou(b[None], boxes)[0] if len(boxes) else np.zeros(0)
    j = int(np.argmax(ov)) if len(ov) else -1
    if j >= 0 and ov[j] > threshold and not det[j]:
      tp[k], det[j] = 1, True
    else:
      fp[k] = 1
  tp, fp = np.cumsum(tp), np.cumsum(fp)
  rec, prec = tp / npos, tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
  mrec, mpre = np.concatenate(([0.0], rec, [1.0])), np.concatenate(([0.0], prec, [0.0]))
  for i in range(len(mpre) - 1, 0, -1):
    mpre[i - 1] = max(mpre[i - 1], mpre[i])
  i = np.where(mrec[1:] != mrec[:-1])[0]
  return np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_voc_ap_equals_devkit_algorithm(seed):
  dets, gts = random_set(seed)
  ap = average_precisions(dets, gts, 3, rule="voc")[0]
  np.testing.assert_allclose(ap, [voc_devkit_ap(dets, gts, c) for c in range(3)], atol=1e-12)


def test_perfect_missing_and_absent_classes():
  gts = [{"boxes": np.array([[0, 0, 1, 1.0]]), "classes": np.array([1])}]
  perfect = [{"boxes": gts[0]["boxes"], "scores": np.array([0.9]), "classes": np.array([1])}]
  ap = average_precisions(perfect, gts, 3, thresholds=COCO_THRESHOLDS, rule="coco")
  assert np.all(ap[:, 1] == 1.0) and np.all(np.isnan(ap[:, [0, 2]]))
  empty = [{"boxes": np.zeros((0, 4)), "scores": np.zeros(0), "classes": np.zeros(0, int)}]
  assert dict(evaluate_detections(empty, gts, 3))["voc_mAP50"] == 0.0


@pytest.mark.parametrize("dets, message", [
    ([{"boxes": [[0, 0, 1, np.nan]], "scores": [0.5], "classes": [0]}], "finite boxes"),
    ([{"boxes": [[0, 0, 1, 1]], "scores": [0.5, 0.2], "classes": [0]}], "of one length"),
    ([{"boxes": [[0, 0, 1, 1]], "scores": [0.5], "classes": [7]}], r"ids in \[0, 3\)"),
    ([], "one entry per image"),
])
def test_bad_detections_are_named(dets, message):
  gts = [{"boxes": np.array([[0, 0, 1, 1.0]]), "classes": np.array([1])}]
  with pytest.raises(ValueError, match=message):
    average_precisions(dets, gts, 3)
