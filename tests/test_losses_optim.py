"""Loss values against direct formulas; every optimizer and schedule builds and steps."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from cnn_lab.losses import softmax_cross_entropy
from cnn_lab.train.optim import OPTIMIZERS, SCHEDULES, make_optimizer


def test_softmax_cross_entropy():
  logits = jnp.array([[2.0, 0.0, -1.0], [0.5, 0.5, 3.0]])
  labels = jnp.array([0, 1])
  log_p = jax.nn.log_softmax(logits)
  expected = -(log_p[0, 0] + log_p[1, 1]) / 2
  np.testing.assert_allclose(softmax_cross_entropy(logits, labels), expected, rtol=1e-6)
  np.testing.assert_allclose(softmax_cross_entropy(logits, labels, mask=jnp.array([1, 0])),
                             -log_p[0, 0], rtol=1e-6)
  eps = 0.1
  smooth = -((1 - eps) * log_p[0, 0] + eps / 3 * log_p[0].sum())
  np.testing.assert_allclose(
      softmax_cross_entropy(logits[:1], labels[:1], label_smoothing=eps), smooth, rtol=1e-6)
  assert float(softmax_cross_entropy(logits, labels, mask=jnp.zeros(2))) == 0.0
  np.testing.assert_allclose(softmax_cross_entropy(jnp.zeros((4, 10)), jnp.zeros(4, int)),
                             np.log(10), rtol=1e-6)


@pytest.mark.parametrize("opt", OPTIMIZERS)
@pytest.mark.parametrize("sched", SCHEDULES)
def test_every_optimizer_and_schedule(opt, sched):
  o = ml_collections.ConfigDict(dict(name=opt, learning_rate=0.1, momentum=0.9,
                                     weight_decay=1e-4, grad_clip_norm=1.0))
  s = ml_collections.ConfigDict(dict(name=sched, warmup_steps=10, end_factor=0.0,
                                     boundaries=(0.5, 80), scales=(0.1, 0.1)))
  tx, lr = make_optimizer(o, s, 100)
  params = {"w": jnp.ones(3)}
  updates, _ = tx.update({"w": jnp.ones(3)}, tx.init(params), params)
  assert float(optax.apply_updates(params, updates)["w"][0]) < 1.0 or sched == "warmup_cosine"
  if sched == "warmup_cosine":
    assert float(lr(0)) == 0.0 and np.isclose(float(lr(10)), 0.1)
  if sched == "piecewise":
    assert np.isclose(float(lr(49)), 0.1) and np.isclose(float(lr(60)), 0.01)
    assert np.isclose(float(lr(90)), 0.001)


def test_unknown_optimizer_and_schedule():
  o = ml_collections.ConfigDict(dict(name="rmsprop", learning_rate=0.1))
  s = ml_collections.ConfigDict(dict(name="constant"))
  with pytest.raises(ValueError, match="optimizer.name: expected one of"):
    make_optimizer(o, s, 10)
  o.name = "sgd"
  s.name = "linear"
  with pytest.raises(ValueError, match="schedule.name: expected one of"):
    make_optimizer(o, s, 10)
