"""Faster R-CNN's pieces: anchors, deltas, RPN targets and sampling, proposals, RoI
sampling, the combined loss, per-class NMS inference, the model, and bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from cnn_lab.detection import rcnn
from cnn_lab.models import create_model
from cnn_lab.ops import boxes as box_ops

GT = jnp.array([[0.1, 0.1, 0.4, 0.35], [0.5, 0.45, 0.9, 0.95], [0.0, 0.0, 0.0, 0.0]])
GT_CLASSES = jnp.array([2, 5, -1])


def test_anchor_grid_sizes_ratios_and_order():
  anchors = rcnn.anchor_grid(4, sizes=(0.25, 0.5), aspect_ratios=(0.5, 1.0, 2.0))
  assert anchors.shape == (4 * 4 * 6, 4)
  cxcywh = np.asarray(box_ops.convert(anchors, "xyxy", "cxcywh"))
  np.testing.assert_allclose(cxcywh[:6, :2], 0.125)  # first cell's centre
  np.testing.assert_allclose(cxcywh[6, :2], [0.375, 0.125])  # row-major: next column
  np.testing.assert_allclose(cxcywh[:6, 2] * cxcywh[:6, 3], [0.0625] * 3 + [0.25] * 3,
                             rtol=1e-6)  # area = size^2
  np.testing.assert_allclose(cxcywh[:3, 3] / cxcywh[:3, 2], [0.5, 1.0, 2.0], rtol=1e-6)
  with pytest.raises(ValueError, match="sizes, aspect_ratios: expected non-empty"):
    rcnn.anchor_grid(4, (), (1.0,))


def test_deltas_round_trip_and_cap():
  ref = jnp.array([[0.1, 0.2, 0.3, 0.5], [0.4, 0.4, 0.6, 0.9]])
  box = jnp.array([[0.12, 0.15, 0.35, 0.55], [0.3, 0.5, 0.7, 0.8]])
  for weights in ((1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0)):
    d = rcnn.encode_deltas(box, ref, weights)
    np.testing.assert_allclose(rcnn.decode_deltas(d, ref, weights), box, atol=1e-6)
  huge = rcnn.decode_deltas(jnp.array([[0.0, 0.0, 50.0, 50.0]]), ref[:1])
  assert jnp.all(jnp.isfinite(huge))  # exp capped at 1000/16 x the reference


def test_rpn_targets_label_every_object_and_sample_balanced():
  anchors = jnp.asarray(rcnn.anchor_grid(8, (0.25, 0.5), (0.5, 1.0, 2.0)))
  settings = rcnn.RPNSettings(batch_per_image=64, positive_fraction=0.5)
  rpn_targets = jax.jit(rcnn.rpn_targets, static_argnums=4)  # as the model runs it
  labels, deltas = rpn_targets(anchors, GT, GT_CLASSES, jax.random.key(0), settings)
  iou = np.asarray(box_ops.iou(anchors, GT[:2]))
  pos, neg = np.asarray(labels == 1), np.asarray(labels == 0)
  assert pos.sum() <= 32 and pos.sum() + neg.sum() == 64
  assert np.all(iou[pos].max(1) >= iou.max(0).min() - 1e-6)  # positives: >= 0.7 or best
  for j in range(2):  # each object has a positive anchor (its best one)
    assert pos[np.argmax(iou[:, j])]
  assert np.all(iou[neg].max(1) < 0.3)
  matched = np.asarray(GT)[np.argmax(iou, 1)]
  np.testing.assert_allclose(jax.jit(rcnn.decode_deltas)(deltas, anchors)[pos], matched[pos],
                             atol=1e-5)
  # no objects at all: only negatives, and a finite loss
  none = jnp.full((3,), -1)
  labels, deltas = rpn_targets(anchors, GT, none, jax.random.key(0), settings)
  assert int(jnp.sum(labels == 1)) == 0 and int(jnp.sum(labels == 0)) == 64
  assert jnp.all(jnp.isfinite(deltas))


def test_sampling_is_random_but_keyed():
  pos = jnp.arange(100) < 40
  neg = ~pos
  a = rcnn.sample_balanced(pos, neg, 20, 0.25, jax.random.key(0))
  b = rcnn.sample_balanced(pos, neg, 20, 0.25, jax.random.key(0))
  c = rcnn.sample_balanced(pos, neg, 20, 0.25, jax.random.key(1))
  assert int(a[0].sum()) == 5 and int(a[1].sum()) == 15
  assert jnp.array_equal(a[0], b[0]) and not jnp.array_equal(a[1], c[1])
  few = rcnn.sample_balanced(jnp.arange(100) < 2, neg, 20, 0.25, jax.random.key(0))
  assert int(few[0].sum()) == 2 and int(few[1].sum()) == 18  # negatives fill the rest


def test_proposals_drop_degenerate_boxes_and_may_be_empty():
  anchors = jnp.asarray(rcnn.anchor_grid(4, (0.25,), (1.0,)))
  logits = jnp.linspace(1.0, 0.0, 16)
  deltas = jnp.zeros((16, 4))
  common = dict(pre_nms=10, post_nms=8, nms_iou=0.7, min_size=0.05)
  propose = jax.jit(lambda *a: rcnn.propose(*a, **common))  # as the model runs it
  boxes, scores, valid = propose(logits, deltas, anchors)
  assert boxes.shape == (8, 4) and int(valid.sum()) == 8
  assert jnp.all(boxes >= 0) and jnp.all(boxes <= 1)  # clipped to the image
  assert jnp.all(scores[:-1] >= scores[1:])  # best first
  # every box shrunk to a sliver (log-size -10) or NaN: no proposals, all padding
  degenerate = deltas.at[:8, 2:].set(-10.0).at[8:].set(jnp.nan)
  boxes, scores, valid = propose(logits, degenerate, anchors)
  assert not jnp.any(valid) and not jnp.any(boxes) and jnp.all(scores == -jnp.inf)


def test_roi_sampling_marks_foreground_by_iou_and_adds_the_objects():
  proposals = jnp.array([[0.1, 0.1, 0.4, 0.36],  # ~ object 0: foreground, class 2
                         [0.6, 0.6, 0.95, 0.95],  # IoU ~0.5 with object 1
                         [0.0, 0.6, 0.2, 0.9],   # background
                         [0.3, 0.3, 0.3, 0.3]])  # degenerate: IoU 0, background
  valid = jnp.array([True, True, True, False])  # the last is padding
  settings = rcnn.RoISettings(batch_per_image=8, positive_fraction=0.5)
  sample_rois = jax.jit(rcnn.sample_rois, static_argnums=5)  # as the model runs it
  rois, labels, deltas = sample_rois(proposals, valid, GT, GT_CLASSES, jax.random.key(0),
                                     settings)
  assert rois.shape == (8, 4) and labels.shape == (8,)
  iou = np.asarray(box_ops.iou(rois, GT[:2]))
  for roi_iou, label in zip(iou, np.asarray(labels)):
    if label > 0:
      assert roi_iou.max() >= 0.5 and label == int(GT_CLASSES[np.argmax(roi_iou)]) + 1
    elif label == 0:
      assert roi_iou.max() < 0.5
  assert int(jnp.sum(labels > 0)) >= 2  # the objects themselves are candidates
  assert not np.any(np.all(np.asarray(rois) == [0.3, 0.3, 0.3, 0.3], 1) &
                    (np.asarray(labels) >= 0))  # padding never sampled
  fg = np.asarray(labels > 0)
  np.testing.assert_allclose(
      jax.jit(rcnn.decode_deltas, static_argnums=2)(deltas, rois, settings.box_weights)[fg],
      np.asarray(GT)[np.argmax(iou, 1)][fg], atol=1e-5)
  assert jnp.all(jnp.isfinite(deltas))
  # a scene without objects, and an "object" of zero size (treated as padding): all
  # sampled RoIs are background, targets finite
  for classes in (jnp.full((3,), -1), jnp.array([-1, -1, 4])):
    _, labels, deltas = sample_rois(proposals, valid, GT, classes, jax.random.key(0),
                                    settings)
    assert int(jnp.sum(labels > 0)) == 0 and int(jnp.sum(labels == 0)) == 3
    assert jnp.all(jnp.isfinite(deltas))


def _training_outputs(seed=0):
  model = create_model("faster_rcnn", rngs=nnx.Rngs(seed), num_classes=8, input_size=32,
                       rpn=rcnn.RPNSettings(batch_per_image=32, pre_nms_train=60,
                                            post_nms_train=16),
                       roi=rcnn.RoISettings(batch_per_image=8))
  images = jax.random.normal(jax.random.key(seed), (2, 32, 32, 3))
  boxes = jnp.stack([GT, GT[::-1]])
  classes = jnp.stack([GT_CLASSES, GT_CLASSES[::-1]])
  graphdef, state = nnx.split(model)
  train = jax.jit(lambda s, x: nnx.merge(graphdef, s)(
      x, train=True, rngs=nnx.Rngs(sampling=jax.random.key(1)), targets=(boxes, classes)))
  infer = jax.jit(lambda s, x: nnx.merge(graphdef, s)(x))  # eager: ~4x slower to run
  return (lambda x: infer(state, x)), images, train(state, images)


def test_model_outputs_and_combined_loss():
  model, images, out = _training_outputs()
  a = 8 * 8 * 9
  assert out["rpn_logits"].shape == (2, a) and out["rpn_deltas"].shape == (2, a, 4)
  assert out["class_logits"].shape == (2, 8, 9) and out["box_deltas"].shape == (2, 8, 8, 4)
  loss_fn = jax.jit(rcnn.faster_rcnn_loss)  # as training runs it
  loss, terms = loss_fn(out)
  assert jnp.isfinite(loss) and set(terms) >= {"rpn_objectness", "rpn_box", "classifier", "box"}
  np.testing.assert_allclose(loss, sum(terms[k] for k in ("rpn_objectness", "rpn_box",
                                                            "classifier", "box")), rtol=1e-6)
  assert float(terms["classifier"]) == pytest.approx(np.log(9), rel=0.05)  # small init
  # perfect predictions make every term ~0
  perfect = dict(out)
  perfect["rpn_logits"] = jnp.where(out["rpn_labels"] == 1, 30.0, -30.0)
  perfect["rpn_deltas"] = out["rpn_targets"]
  perfect["class_logits"] = 30.0 * jax.nn.one_hot(jnp.maximum(out["roi_labels"], 0), 9)
  perfect["box_deltas"] = jnp.broadcast_to(out["roi_targets"][:, :, None],
                                           out["box_deltas"].shape)
  loss, _ = loss_fn(perfect)
  assert float(loss) < 1e-6
  infer = model(images)  # no targets: test-time proposals (jitted)
  assert infer["proposals"].shape == (2, 64, 4) and infer["class_logits"].shape == (2, 64, 9)


def test_postprocess_keeps_one_box_per_object_and_class():
  proposals = jnp.array([[0.1, 0.1, 0.4, 0.4], [0.11, 0.1, 0.41, 0.4], [0.6, 0.6, 0.9, 0.9],
                         [0.0, 0.0, 0.0, 0.0]])
  valid = jnp.array([True, True, True, False])
  logits = jnp.array([[0.0, 9.0, 0.0], [0.0, 8.0, 0.0], [0.0, 0.0, 9.0], [0.0, 9.0, 9.0]])
  deltas = jnp.zeros((4, 2, 4))
  post = rcnn.PostProcess(score_threshold=0.05, iou_threshold=0.5, max_detections=5)
  out = jax.jit(jax.vmap(post))(proposals[None], valid[None], logits[None], deltas[None])
  out = jax.tree.map(lambda x: x[0], out)
  assert int(out["count"]) == 2
  np.testing.assert_array_equal(out["classes"][:2], [0, 1])
  np.testing.assert_allclose(out["boxes"][:2], proposals[jnp.array([0, 2])], atol=1e-6)
  assert jnp.all(out["classes"][2:] == -1) and jnp.all(out["scores"][2:] == 0)
  # no valid proposal at all: nothing detected, no error
  empty = jax.jit(post)(proposals, jnp.zeros(4, bool), logits, deltas)
  assert int(empty["count"]) == 0 and jnp.all(empty["classes"] == -1)


def test_bad_input_names_the_argument():
  with pytest.raises(ValueError, match=r"gt_boxes: expected \[M, 4\] with M >= 1"):
    rcnn.match(jnp.zeros((3, 4)), jnp.zeros((0, 4)), jnp.zeros((0,), bool))
  with pytest.raises(ValueError, match="pool: expected 'align'"):
    create_model("faster_rcnn", rngs=nnx.Rngs(0), num_classes=3, pool="avg")
  with pytest.raises(ValueError, match="input_size: expected a multiple of 4"):
    create_model("faster_rcnn", rngs=nnx.Rngs(0), num_classes=3, input_size=66)


def _two_rectangles():
  image = np.full((48, 64, 3), 40, np.uint8)
  image[5:20, 8:30] = (220, 30, 30)  # red: x 8..30, y 5..20
  image[25:45, 36:60] = (30, 200, 60)  # green: x 36..60, y 25..45
  boxes = np.array([[8, 5, 30, 20], [36, 25, 60, 45]], np.float32) / [64, 48, 64, 48]
  return image, boxes.astype(np.float32)


def test_selective_search_proposes_each_object_and_the_hierarchy():
  from cnn_lab.detection.selective_search import selective_search
  image, objects = _two_rectangles()
  proposals = selective_search(image)
  assert proposals.dtype == np.float32 and proposals.shape[1] == 4
  assert np.all(proposals[:, 2:] > proposals[:, :2])
  assert len(np.unique(proposals, axis=0)) == len(proposals)
  best = np.asarray(box_ops.iou(jnp.asarray(objects), jnp.asarray(proposals))).max(1)
  np.testing.assert_allclose(best, 1.0)  # each rectangle is a region of its own
  assert np.any(np.all(np.isclose(proposals, [0, 0, 1, 1]), 1))  # the last merge: all
  with pytest.raises(ValueError, match=r"image: expected an RGB image \[H, W, 3\]"):
    selective_search(image[..., 0])


def test_rcnn_warp_labels_and_detect():
  from cnn_lab.detection import region_cnn
  image, objects = _two_rectangles()
  x = jnp.asarray(image, jnp.float32) / 255.0
  # jitted, as experiments.rcnn runs them (op by op, this test compiled ~200 programs)
  warp = jax.jit(region_cnn.warp, static_argnums=2, static_argnames="context")
  crops = warp(x, objects, 8)
  assert crops.shape == (2, 8, 8, 3)
  # all red inside (the outermost samples sit within half a pixel of the border, where
  # bilinear interpolation takes a little of the background)
  np.testing.assert_allclose(crops[0, 1:-1, 1:-1], np.broadcast_to(
      [220 / 255, 30 / 255, 30 / 255], (6, 6, 3)), atol=1e-5)
  np.testing.assert_allclose(crops[0], crops[0, 4:5, 4:5] + 0 * crops[0], atol=0.02)
  wide = warp(x, objects, 8, context=0.5)  # context: the dark border shows
  assert float(wide[0, 0, 0, 0]) < 0.5 and float(wide[0, 4, 4, 0]) > 0.8

  gt = np.concatenate([objects, np.zeros((1, 4), np.float32)])
  classes = np.array([3, 6, -1])
  proposals, valid = region_cnn.pad_proposals(
      np.array([objects[0], objects[1] * 0.99, [0.5, 0.0, 0.9, 0.2],
                objects[0] + [0.1375, 0.0, 0.1375, 0.0]]), 6)  # IoU 0.43 with the first
  labels = region_cnn.label_proposals(proposals, valid, gt, classes)
  np.testing.assert_array_equal(labels, [4, 7, 0, -1, -1, -1])  # 4th: IoU 0.3..0.5 unused
  np.testing.assert_allclose(region_cnn.coverage(proposals, gt, classes), [1.0, 0.928],
                             atol=1e-3)  # the second: its 0.99-scaled box

  def classify(crops):  # red crops are class 3, others background
    red = crops[..., 0].mean((1, 2)) > 0.6
    return jnp.where(red[:, None], 10.0 * jax.nn.one_hot(4, 9), 10.0 * jax.nn.one_hot(0, 9))

  detect = jax.jit(lambda *a: region_cnn.detect(
      classify, *a, size=8, context=0.0, postprocess=rcnn.PostProcess(max_detections=4)))
  out = detect(x, jnp.asarray(proposals), jnp.asarray(valid))
  assert int(out["count"]) == 1 and int(out["classes"][0]) == 3
  np.testing.assert_allclose(out["boxes"][0], objects[0], atol=1e-6)
