"""Style transfer's costs against numpy formulas, extractors and a few optimisation steps."""

import numpy as np
import pytest

from cnn_lab.losses import (content_cost, gram_matrix, layer_style_cost, style_cost,
                            total_cost, total_variation)
from cnn_lab.style import make_extractor, run_style_transfer
from cnn_lab.style.extractors import vgg19_layer_indices


def test_costs_equal_the_course_formulas():
  rng = np.random.default_rng(0)
  a_c, a_g = rng.normal(size=(2, 4, 5, 3)).astype(np.float32)
  h, w, c = a_c.shape
  np.testing.assert_allclose(content_cost(a_c, a_g), ((a_c - a_g) ** 2).sum() / (4 * h * w * c),
                             rtol=1e-5)
  unrolled = a_c.reshape(h * w, c).T  # (n_C, n_H n_W)
  np.testing.assert_allclose(gram_matrix(a_c), unrolled @ unrolled.T, rtol=1e-5)
  np.testing.assert_allclose(gram_matrix(np.stack([a_c, a_g])),
                             np.stack([gram_matrix(a_c), gram_matrix(a_g)]), rtol=1e-5)
  g_s, g_g = unrolled @ unrolled.T, a_g.reshape(h * w, c).T @ a_g.reshape(h * w, c)
  expected = ((g_s - g_g) ** 2).sum() / (4 * c ** 2 * (h * w) ** 2)
  np.testing.assert_allclose(layer_style_cost(a_c, a_g), expected, rtol=1e-5)
  two = style_cost({"x": a_c, "y": a_g}, {"x": a_g, "y": a_g}, {"x": 0.3, "y": 0.7})
  np.testing.assert_allclose(two, 0.3 * expected, rtol=1e-5)
  np.testing.assert_allclose(total_cost(2.0, 3.0), 10 * 2.0 + 40 * 3.0)
  image = rng.uniform(size=(6, 7, 3))
  np.testing.assert_allclose(total_variation(image), np.abs(np.diff(image, axis=0)).sum() +
                             np.abs(np.diff(image, axis=1)).sum(), rtol=1e-5)


def test_bad_inputs_are_named():
  with pytest.raises(ValueError, match=r"a_G: expected the shape of a_C \(4, 5, 3\)"):
    content_cost(np.zeros((4, 5, 3)), np.zeros((4, 5, 4)))
  with pytest.raises(ValueError, match="a: expected activations"):
    gram_matrix(np.zeros((4, 5)))
  with pytest.raises(ValueError, match=r"layers: expected names among \['conv1_1'"):
    make_extractor("vgg19", ["conv9_9"], weights=None)
  with pytest.raises(ValueError, match="layers: expected names among"):
    make_extractor("mobilenet_v2", ["blocks.99"], weights=None)
  extractor = make_extractor("mobilenet_v2", ["stem", "blocks.2"], weights=None)
  with pytest.raises(ValueError, match="style: expected an image with the content's channels"):
    run_style_transfer(extractor, np.zeros((32, 32, 3)), np.zeros((32, 32, 1)),
                       content_layer="blocks.2", style_weights={"stem": 1.0}, steps=1)


def test_vgg19_layer_names_follow_torchvision():
  idx = vgg19_layer_indices()
  assert idx["conv1_1"] == 0 and idx["conv2_1"] == 5 and idx["conv4_2"] == 21
  assert idx["conv5_1"] == 28 and len(idx) == 16


@pytest.mark.parametrize("optimizer", ["adam", "lbfgs"])
def test_a_few_steps_lower_the_total_cost(optimizer):
  rng = np.random.default_rng(1)
  content, style = rng.uniform(size=(2, 32, 32, 3)).astype(np.float32)
  extractor = make_extractor("mobilenet_v2", ["stem", "blocks.1", "blocks.3"], weights=None)
  assert hasattr(extractor.forward, "lower")  # jitted: eager, each op compiled (17 s)
  result = run_style_transfer(extractor, content, style, content_layer="blocks.3",
                              style_weights={"stem": 50.0, "blocks.1": 50.0}, steps=8,
                              optimizer=optimizer, learning_rate=0.05)
  assert result.history[-1]["total"] < result.history[0]["total"]
  assert result.image.min() >= 0 and result.image.max() <= 1
  assert len(result.snapshots) >= 2
