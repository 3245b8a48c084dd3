"""U-Net shapes and parameter counts, segmentation losses and metrics, the task end to end."""

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from cnn_lab.data.pipeline import Preprocess, SegmentationTarget
from cnn_lab.eval.classification import confusion_matrix, sum_batches
from cnn_lab.eval.segmentation import per_class_iou, segmentation_metrics
from cnn_lab.losses import dice_loss, pixel_cross_entropy
from cnn_lab.models import create_model, param_count
from tests.helpers import ROOT


def output_shape(name, shape, **kw):
  x = jax.ShapeDtypeStruct(shape, jnp.float32)
  return jax.eval_shape(lambda x: create_model(name, rngs=nnx.Rngs(0), **kw)(x), x).shape


def test_course_unet_has_the_published_parameter_count_and_keeps_the_size():
  assert param_count("unet", num_classes=23, input_size=(96, 128)) == 8_640_471
  assert output_shape("unet", (1, 96, 128, 3), num_classes=23, input_size=(96, 128)) == \
      (1, 96, 128, 23)


def test_original_unet_maps_572_to_388():
  assert output_shape("unet_original", (1, 572, 572, 1), num_classes=2) == (1, 388, 388, 2)


@pytest.mark.parametrize("name, size", [("unet", 72), ("unet", (96, 120)),
                                        ("unet_original", 570)])
def test_sizes_the_unet_cannot_halve_are_refused(name, size):
  with pytest.raises(ValueError, match="input_size: expected"):
    create_model(name, rngs=nnx.Rngs(0), input_size=size)


def test_pixel_cross_entropy_and_dice_against_numpy():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(2, 4, 5, 3)).astype(np.float32)
  labels = rng.integers(0, 3, (2, 4, 5))
  log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  nll = -np.take_along_axis(log_p, labels[..., None], -1)[..., 0]
  np.testing.assert_allclose(pixel_cross_entropy(logits, labels), nll.mean(), rtol=1e-5)
  w = np.array([1.0, 2.0, 0.5])
  np.testing.assert_allclose(pixel_cross_entropy(logits, labels, class_weights=w),
                             (nll * w[labels]).sum() / w[labels].sum(), rtol=1e-5)
  np.testing.assert_allclose(pixel_cross_entropy(logits, labels, mask=np.array([True, False])),
                             nll[0].mean(), rtol=1e-5)
  perfect = 50.0 * jax.nn.one_hot(labels, 3)
  assert float(dice_loss(perfect, labels)) < 1e-4
  assert float(dice_loss(logits, labels)) > 0.2


def test_metrics_equal_sklearn_over_the_whole_split():
  from sklearn.metrics import accuracy_score, jaccard_score
  rng = np.random.default_rng(1)
  truth = rng.integers(0, 4, (3, 8, 8))
  pred = np.where(rng.uniform(size=truth.shape) < 0.7, truth, rng.integers(0, 4, truth.shape))
  # Two batches, the second padded with a masked-out example, summed as the evaluator does.
  mask = np.array([True, True, False])
  batches = [(truth[:1], pred[:1], None), (truth[1:], pred[1:], mask[1:])]
  total = sum_batches(lambda _, b: {"confusion": confusion_matrix(b[0], b[1], 4, b[2])},
                      None, batches)["confusion"]
  assert total.dtype == np.int64
  metrics = dict(segmentation_metrics(total, ("a", "b", "c", "d")))
  t, p = truth[:2].reshape(-1), pred[:2].reshape(-1)
  np.testing.assert_allclose(per_class_iou(total), jaccard_score(t, p, average=None))
  np.testing.assert_allclose(metrics["mean_iou"], jaccard_score(t, p, average="macro"))
  np.testing.assert_allclose(metrics["pixel_accuracy"], accuracy_score(t, p))
  assert set(metrics) >= {"iou/a", "iou/d"}


def test_segmentation_targets_check_size_and_ids_and_resize_nearest():
  image = np.zeros((4, 6, 3), np.uint8)
  good = SegmentationTarget(3)({"image": image, "mask": np.full((4, 6, 1), 2, np.uint8)})
  assert good["segmentation"].shape == (4, 6) and "mask" not in good
  with pytest.raises(ValueError, match=r"mask: expected a mask of the image's size \(4, 6\)"):
    SegmentationTarget(3)({"image": image, "mask": np.zeros((4, 5), np.uint8)})
  with pytest.raises(ValueError, match=r"class ids in \[0, 3\) after offset -1"):
    SegmentationTarget(3, "segmentation_mask", -1)(
        {"image": image, "segmentation_mask": np.zeros((4, 6), np.uint8)})
  maps = np.arange(16).reshape(1, 4, 4)
  out = Preprocess(8)({"image": np.zeros((1, 4, 4, 3), np.uint8), "segmentation": maps})
  np.testing.assert_array_equal(out["segmentation"][0, ::2, ::2], maps[0])


def test_unet_config_trains_and_segment_draws(tmp_path):
  from cnn_lab.train.launch import load_config
  from cnn_lab.train.loop import train_and_evaluate
  config = load_config(os.path.join(ROOT, "experiments", "configs", "unet_shapes.py:test"))
  result = train_and_evaluate(config, str(tmp_path))
  assert result["step"] == 3 and 0.0 <= result["eval/mean_iou"] <= 1.0
  assert "eval/iou/background" in result
  out = subprocess.run([sys.executable, "-m", "experiments.segment", f"--workdir={tmp_path}",
                        "--examples=2", "coffee"], cwd=ROOT, capture_output=True, text=True,
                       timeout=300)
  assert out.returncode == 0, out.stderr[-2000:]
  assert os.path.exists(tmp_path / "segmentations" / "grid.png")
  assert os.path.exists(tmp_path / "segmentations" / "coffee.png")


def test_confusion_counts_are_exact_integers_at_any_size():
  """float32 counts stop at 2**24 pixels (the old matrix: a 1,000-image 1024x2048 split
  got a wrong mean IoU); per call int32, over a split int64."""
  n = 2**24 + 1
  one_call = confusion_matrix(np.zeros(n, np.int32), np.zeros(n, np.int32), 2)
  assert one_call.dtype == jnp.int32 and int(one_call[0, 0]) == n
  big = jnp.full((2, 2), 2**30, jnp.int32)  # five batches of 2**30: 2**32 + 2**30 in all
  total = sum_batches(lambda _, b: {"confusion": big, "loss": jnp.float32(0.5)}, None,
                      range(5))
  assert total["confusion"].dtype == np.int64 and int(total["confusion"][1, 1]) == 5 * 2**30
  assert total["loss"] == 2.5
