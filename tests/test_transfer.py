"""Transfer learning pieces: optimizer param groups, few-shot subsets, the frozen base."""

import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from flax import nnx

from cnn_lab.data.order import per_class_indices
from cnn_lab.models import create_model
from cnn_lab.train.optim import make_optimizer
from cnn_lab.train.state import create_train_state
from cnn_lab.train.steps import make_train_step
from cnn_lab.train.tasks.classification import Classification
from tests.helpers import ROOT


def _optimizer(groups, name="adamw", weight_decay=0.5):
  opt = ml_collections.ConfigDict(dict(name=name, learning_rate=0.1, weight_decay=weight_decay,
                                       param_groups=groups))
  return make_optimizer(opt, ml_collections.ConfigDict(dict(name="constant")), 10)[0]


def test_param_groups_freeze_scale_and_start_late():
  params = {"head": {"w": jnp.ones(3)}, "base": {"top": jnp.ones(3), "low": jnp.ones(3)}}
  grads = jax.tree.map(jnp.ones_like, params)
  tx = _optimizer(((r"^head\.", 1.0), (r"^base\.top", 0.1, 5)), name="sgd", weight_decay=0)
  state = tx.init(params)
  updates, state = tx.update(grads, state, params)
  assert np.allclose(updates["head"]["w"], -0.1)
  assert np.allclose(updates["base"]["top"], 0.0)   # starts at step 5
  assert np.allclose(updates["base"]["low"], 0.0)   # unmatched: frozen
  for _ in range(5):
    updates, state = tx.update(grads, state, params)
  assert np.allclose(updates["base"]["top"], -0.01)
  # AdamW's weight decay never touches a frozen parameter.
  tx = _optimizer(((r"^head\.", 1.0),))
  updates, _ = tx.update(jax.tree.map(jnp.zeros_like, params), tx.init(params), params)
  assert np.allclose(updates["base"]["low"], 0.0) and not np.allclose(updates["head"]["w"], 0)


def test_few_shot_subsets_are_balanced_and_shared():
  labels = np.repeat(np.arange(4), 10)
  a, b = per_class_indices(labels, 3, seed=0), per_class_indices(labels, 3, seed=0)
  np.testing.assert_array_equal(a, b)
  assert np.all(np.bincount(labels[a]) == 3)
  with pytest.raises(ValueError, match="train_per_class: expected <= the 10 examples"):
    per_class_indices(labels, 11)


def test_frozen_base_gets_no_gradient_and_keeps_its_statistics():
  model = create_model("mobilenet_v2_transfer", rngs=nnx.Rngs(0), num_classes=3,
                       input_size=32, trainable_from=18)  # only the 1x1 conv and the head
  tx = optax.sgd(0.1)
  graphdef, state = create_train_state(model, tx, jax.random.key(0))
  batch = {"image": jax.random.normal(jax.random.key(1), (4, 32, 32, 3)),
           "label": jnp.arange(4) % 3}
  new, _ = jax.jit(make_train_step(graphdef, tx, Classification()))(state, batch)
  # exact equality: a random base with its BatchNorm frozen (inference mode) shrinks the
  # features through 50 layers of torchvision's fan-out initialisation, so the head's
  # step is tiny (~6e-11) but not zero; the frozen layers' is exactly zero
  moved = lambda path: not np.array_equal(path(new.params), path(state.params))
  assert moved(lambda p: p["head"]["kernel"][...])
  assert moved(lambda p: p["base"]["head"]["conv"]["kernel"][...])
  assert not moved(lambda p: p["base"]["blocks"][16]["project"]["conv"]["kernel"][...])
  assert not moved(lambda p: p["base"]["stem"]["conv"]["kernel"][...])
  for a, b in zip(jax.tree.leaves(new.batch_stats), jax.tree.leaves(state.batch_stats)):
    np.testing.assert_array_equal(a, b)  # freeze_bn: running statistics untouched
  with pytest.raises(ValueError, match=r"trainable_from: expected a layer index in \[0, 19\]"):
    create_model("mobilenet_v2_transfer", rngs=nnx.Rngs(0), trainable_from=20)


@pytest.mark.parametrize("variant", ["finetune"])  # linear and scratch: same path, fewer groups
def test_transfer_variants_train_through_the_launcher(variant, tmp_path):
  from cnn_lab.train.launch import load_config
  from cnn_lab.train.loop import train_and_evaluate
  config = load_config(os.path.join(ROOT, "experiments", "configs",
                                    f"transfer_shapes.py:{variant},test"))
  result = train_and_evaluate(config, str(tmp_path))
  assert result["step"] == 3 and 0.0 <= result["eval/accuracy"] <= 1.0
