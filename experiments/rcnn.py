r"""R-CNN, the teaching path: selective search, warped crops, a separate classifier.

  python -m experiments.rcnn [--steps=3000] [--out=docs/figures/rcnn]

1. Proposes regions with selective search on `shapes/multi_64` training scenes (and
   adds the objects' own boxes, as R-CNN's fine-tuning does), labels them by IoU
   (>= 0.5: the object's class; < 0.3: background; in between: unused), keeps every
   object crop and up to 3x as many background crops, warps each to 32x32 with 8%
   context.
2. Trains a separate classifier on the crops (the zoo's `cnn_example`, 9 classes).
3. Detects on the test scenes: selective search, every proposal warped and classified,
   per-class NMS; evaluates with the same mAP code as YOLO and Faster R-CNN, and times
   proposals and classification separately.
4. Prints a table, writes `results.json` and `detections.png` (8 test scenes).
"""

import json
import os
import time

import jax
import numpy as np
from absl import flags, logging
from flax import nnx

from cnn_lab.benchmarks.report import format_table
from cnn_lab.benchmarks.timing import machine
from cnn_lab.data import datasets
from cnn_lab.data.pipeline import PadObjects, Preprocess
from cnn_lab.data.shapes import CLASSES
from cnn_lab.detection import rcnn, region_cnn
from cnn_lab.detection.selective_search import selective_search
from cnn_lab.eval import evaluate_detections
from cnn_lab.models import create_model
from cnn_lab.train import launch
from cnn_lab.train.arrays import fit_classifier
from cnn_lab.viz import draw_boxes, grid

flags.DEFINE_integer("train_images", 1000, "Training scenes crops are cut from.")
flags.DEFINE_integer("test_images", 500, "Test scenes detected and evaluated (500: all).")
flags.DEFINE_integer("steps", 3000, "Classifier training steps (batch 64).")
flags.DEFINE_string("model", "cnn_example", "The crop classifier (a zoo classifier).")
flags.DEFINE_integer("crop", 32, "Warped crop size.")
flags.DEFINE_float("context", 0.08, "Context added around each box, per side.")
flags.DEFINE_integer("max_proposals", 256, "Proposals classified per scene at most.")
flags.DEFINE_string("out", "docs/figures/rcnn", "Where results go.")
FLAGS = flags.FLAGS
DATASET, SIZE, MEAN, STD = "shapes/multi_64", 64, 0.45, 0.25
PAD = PadObjects(4)


def scenes(split: str, count: int):
  """-> (normalised images `[N, 64, 64, 3]`, raw uint8 images, padded objects)."""
  source = datasets.load_source(DATASET, split)
  records = [PAD(source[i]) for i in range(min(count, len(source)))]
  raw = np.stack([r["image"] for r in records])
  images = Preprocess(SIZE, MEAN, STD)({"image": raw})["image"]
  return images, raw, records


def training_crops(count: int, warp):
  images, raw, records = scenes("train", count)
  rng = np.random.default_rng(0)
  crops, labels = [], []
  for image, pixels, r in zip(images, raw, records):
    found = r["classes"] >= 0
    proposals = np.concatenate([r["boxes"][found], selective_search(pixels)])
    proposals, valid = region_cnn.pad_proposals(proposals, FLAGS.max_proposals)
    label = region_cnn.label_proposals(proposals, valid, r["boxes"], r["classes"])
    fg, bg = np.flatnonzero(label > 0), np.flatnonzero(label == 0)
    bg = rng.choice(bg, min(len(bg), 3 * max(len(fg), 1)), replace=False)
    crops.append(np.asarray(warp(image, proposals))[np.concatenate([fg, bg])])
    labels.append(label[np.concatenate([fg, bg])])
  return np.concatenate(crops), np.concatenate(labels)


def main(argv):
  del argv
  warp = jax.jit(lambda image, boxes: region_cnn.warp(image, boxes, FLAGS.crop,
                                                      context=FLAGS.context))
  start = time.perf_counter()
  crops, labels = training_crops(FLAGS.train_images, warp)
  crop_seconds = time.perf_counter() - start
  logging.info("%d training crops (%d of objects) in %.1fs", len(labels),
               int(np.sum(labels > 0)), crop_seconds)
  model = create_model(FLAGS.model, rngs=nnx.Rngs(0), num_classes=len(CLASSES) + 1,
                       in_channels=3, input_size=FLAGS.crop)
  start = time.perf_counter()
  model = fit_classifier(model, crops, labels, steps=FLAGS.steps)
  fit_seconds = time.perf_counter() - start

  post = rcnn.PostProcess(score_threshold=0.01, iou_threshold=0.3, max_detections=50)
  graphdef, state = nnx.split(model)
  detect = jax.jit(lambda state, image, proposals, valid: region_cnn.detect(
      lambda x: nnx.merge(graphdef, state)(x), image, proposals, valid, size=FLAGS.crop,
      context=FLAGS.context, postprocess=post))
  images, raw, records = scenes("test", FLAGS.test_images)
  detections, truth, recall, counts = [], [], [], []
  search_seconds = classify_seconds = 0.0
  detect(state, images[0], *region_cnn.pad_proposals(np.zeros((1, 4)), FLAGS.max_proposals))
  for image, pixels, r in zip(images, raw, records):
    t0 = time.perf_counter()
    proposals = selective_search(pixels)
    t1 = time.perf_counter()
    padded, valid = region_cnn.pad_proposals(proposals, FLAGS.max_proposals)
    out = jax.block_until_ready(detect(state, image, padded, valid))
    search_seconds += t1 - t0
    classify_seconds += time.perf_counter() - t1
    n, found = int(out["count"]), r["classes"] >= 0
    detections.append({k: np.asarray(out[k])[:n] for k in ("boxes", "scores", "classes")})
    truth.append({"boxes": r["boxes"][found], "classes": r["classes"][found]})
    recall.extend(region_cnn.coverage(padded, r["boxes"], r["classes"]))
    counts.append(len(proposals))
  metrics = dict(evaluate_detections(detections, truth, len(CLASSES)))
  n = len(records)
  recall = np.asarray(recall)
  row = {"detector": f"R-CNN (selective search + {FLAGS.model})",
         "voc_mAP50": metrics["voc_mAP50"], "coco_mAP": metrics["coco_mAP"],
         "train_s": crop_seconds + fit_seconds,
         "images_per_s": n / (search_seconds + classify_seconds),
         "proposals_ms": 1e3 * search_seconds / n, "classify_ms": 1e3 * classify_seconds / n}
  print(f"selective search: {np.mean(counts):.0f} proposals per scene (at most "
        f"{FLAGS.max_proposals} classified); objects covered at IoU >= 0.5: "
        f"{np.mean(recall >= 0.5):.3f}, >= 0.7: {np.mean(recall >= 0.7):.3f}")
  print(f"classifier: {len(labels)} crops from {FLAGS.train_images} scenes in "
        f"{crop_seconds:.0f}s, {FLAGS.steps} steps in {fit_seconds:.0f}s")
  print(format_table([row]))

  os.makedirs(FLAGS.out, exist_ok=True)
  tiles = []
  for k in range(min(8, n)):
    keep = detections[k]["scores"] >= 0.5
    tiles.append(draw_boxes(raw[k], detections[k]["boxes"][keep],
                            detections[k]["classes"][keep], detections[k]["scores"][keep],
                            names=CLASSES, truth=(truth[k]["boxes"], truth[k]["classes"])))
  grid(tiles).save(os.path.join(FLAGS.out, "detections.png"))
  with open(os.path.join(FLAGS.out, "results.json"), "w") as f:
    json.dump({"machine": machine(), "row": row, **metrics,
               "proposals_per_scene": float(np.mean(counts)),
               "recall50": float(np.mean(recall >= 0.5)),
               "recall70": float(np.mean(recall >= 0.7)), "crops": int(len(labels)),
               "flags": {k: getattr(FLAGS, k) for k in ("train_images", "test_images", "steps",
                                                        "model", "crop", "context",
                                                        "max_proposals")}}, f, indent=2)
  print(f"wrote {FLAGS.out}/detections.png and results.json")


if __name__ == "__main__":
  launch.run(main)
