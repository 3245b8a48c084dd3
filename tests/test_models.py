"""Published parameter counts (with jax.eval_shape: nothing is allocated) and shapes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from cnn_lab import nn
from cnn_lab.errors import InputError
from cnn_lab.models import create_model, param_count
from cnn_lab.models.lenet import C3_TABLE


def layer_counts(model):
  state = nnx.state(model, nnx.Param)
  return {name: int(sum(np.prod(v.shape) for v in jax.tree.leaves(sub)))
          for name, sub in state.items()}


def test_lenet5_classic_has_60000_parameters_before_the_output_layer():
  model = nnx.eval_shape(lambda: create_model("lenet5", rngs=nnx.Rngs(0)))
  counts = layer_counts(model)
  assert counts == {"c1": 156, "s2": 12, "c3": 1516, "s4": 32, "c5": 48120, "f6": 10164,
                    "output": 850}
  assert sum(counts.values()) - counts["output"] == 60_000
  assert len(C3_TABLE) == 16 and sum(map(len, C3_TABLE)) == 60


def test_cnn_example_counts_match_the_course_table():
  model = nnx.eval_shape(lambda: create_model("cnn_example", rngs=nnx.Rngs(0)))
  assert layer_counts(model) == {"conv1": 608, "conv2": 3216, "fc3": 48120, "fc4": 10164,
                                 "output": 850}


# Jitted, as training runs a model: op by op, each layer's operations compile alone
# (the scratch LeNet-5 compiled ~100 programs that way).
forward = nnx.jit(lambda model, x: model(x))


def test_lenet5_modern_count_and_forward_shapes():
  assert param_count("lenet5_modern") == 156 + 2416 + 48120 + 10164 + 850
  for name in ["lenet5", "lenet5_modern", "cnn_example"]:
    model = create_model(name, rngs=nnx.Rngs(0), in_channels=3, num_classes=7)
    assert forward(model, jnp.ones((2, 32, 32, 3))).shape == (2, 7)


def test_c3_connections_are_sparse_and_trainable():
  model = create_model("lenet5", rngs=nnx.Rngs(0))
  kernel = model.c3.dense_kernel()
  connected = np.asarray(jnp.any(kernel != 0, axis=(0, 1)))
  for j, inputs in enumerate(C3_TABLE):
    assert set(np.flatnonzero(connected[:, j])) == set(inputs)


@pytest.mark.parametrize("impl", ["xla", "scratch"])
def test_impl_switch_gives_the_same_model(impl):
  a = create_model("lenet5", rngs=nnx.Rngs(0), impl="xla")
  b = create_model("lenet5", rngs=nnx.Rngs(0), impl=impl)
  x = jax.random.normal(jax.random.key(0), (3, 32, 32, 1))
  np.testing.assert_allclose(forward(a, x), forward(b, x), rtol=1e-5, atol=1e-5)


def test_wrong_channel_count_names_the_channels():
  model = create_model("lenet5_modern", rngs=nnx.Rngs(0), in_channels=1)
  with pytest.raises(ValueError, match=r"x.shape\[-1\] \(channels\): expected 1.*received 3"):
    model(jnp.ones((2, 32, 32, 3)))
  with pytest.raises(ValueError, match=r"x.shape\[-1\] \(channels\): expected 4"):
    nn.ConvTranspose(4, 2, 3, rngs=nnx.Rngs(0))(jnp.ones((1, 5, 5, 3)))


def test_input_too_small_and_unknown_model():
  with pytest.raises(ValueError, match=r"input_size: expected >= 32 .*received 28"):
    create_model("lenet5", rngs=nnx.Rngs(0), input_size=28)
  with pytest.raises(ValueError, match=r"model: expected one of \[.*'lenet5'.*\], received 'lenet-5'"):
    create_model("lenet-5", rngs=nnx.Rngs(0))


def test_layers():
  rngs = nnx.Rngs(0)
  x = jnp.ones((2, 9, 9, 4))
  assert nn.Conv(4, 6, 3, stride=2, padding="SAME", rngs=rngs)(x).shape == (2, 5, 5, 6)
  assert nn.Conv(4, 6, (3,), rngs=rngs)(jnp.ones((2, 9, 4))).shape == (2, 9, 6)
  assert nn.Conv(4, 6, 3, groups=2, rngs=rngs).kernel.shape == (3, 3, 2, 6)
  assert nn.DepthwiseConv(4, 3, multiplier=2, rngs=rngs)(x).shape == (2, 9, 9, 8)
  assert nn.ConvTranspose(4, 3, 3, stride=2, rngs=rngs)(x).shape == (2, 18, 18, 3)
  assert nn.MaxPool(2)(x).shape == (2, 4, 4, 4)
  assert nn.AvgPool(3, 1, "SAME")(x).shape == x.shape
  assert nn.LRN()(x).shape == x.shape
  assert nn.Conv(4, 6, 3, dtype=jnp.bfloat16, rngs=rngs)(x).dtype == jnp.bfloat16
  with pytest.raises(ValueError, match=r"x.shape\[-1\]: expected in_features = 5"):
    nn.Dense(5, 2, rngs=rngs)(jnp.ones((2, 4)))
  with pytest.raises(ValueError, match="activation: expected one of"):
    nn.activation("relu7")


@pytest.mark.parametrize("name", ["lenet5", "lenet5_modern", "cnn_example"])
def test_lenet_family_splits_and_trains_one_step(name):
  import optax

  from cnn_lab.train.state import create_train_state
  from cnn_lab.train.steps import make_train_step
  from cnn_lab.train.tasks.classification import Classification
  model = create_model(name, rngs=nnx.Rngs(0), in_channels=1, num_classes=10)
  tx = optax.adam(1e-3)
  graphdef, state = create_train_state(model, tx, jax.random.key(0))
  batch = {"image": jnp.ones((4, 32, 32, 1)), "label": jnp.arange(4)}
  new_state, metrics = jax.jit(make_train_step(graphdef, tx, Classification()))(state, batch)
  assert int(new_state.step) == 1 and np.isfinite(float(metrics["loss"]))


INITIALISERS = {"lecun_normal": jax.nn.initializers.lecun_normal(),
                "he_normal": jax.nn.initializers.he_normal(),
                "normal": jax.nn.initializers.normal(0.01),
                "zeros": jax.nn.initializers.zeros, "ones": jax.nn.initializers.ones}


def _ours(name):
  return {"lecun_normal": nn.init.lecun_normal(), "he_normal": nn.init.he_normal(),
          "normal": nn.init.normal(0.01), "zeros": nn.init.zeros, "ones": nn.init.ones}[name]


@pytest.mark.parametrize("shape", [(3, 3, 16, 32), (1, 1, 96, 24), (1000, 10), (2, 5, 3)])
def test_initialisers_are_jaxs_bit_for_bit(shape):
  """`nn.init` draws a flat power-of-two size and keeps its first values: the same bits as
  JAX's draw of `shape` (threefry draws each element from (key, index) alone)."""
  key = jax.random.key(7)
  for name, jaxs in INITIALISERS.items():
    np.testing.assert_array_equal(_ours(name)(key, shape, jnp.float32),
                                  jaxs(key, shape, jnp.float32), err_msg=name)


def test_initialisers_traced_or_in_another_dtype_are_jaxs_own():
  key, shape = jax.random.key(7), (3, 3, 4, 8)
  traced = lambda inits: jax.jit(lambda k: {n: f(k, shape, jnp.float32)  # one program each
                                            for n, f in inits.items()})(key)
  jaxs = traced(INITIALISERS)
  for name, ours in traced({name: _ours(name) for name in INITIALISERS}).items():
    np.testing.assert_array_equal(ours, jaxs[name], err_msg=name)
  for name in ("lecun_normal", "zeros"):  # a drawn and a constant one (eager: slow to run)
    assert _ours(name)(key, shape, jnp.bfloat16).dtype == jnp.bfloat16


def test_building_a_model_compiles_a_program_per_size_bucket_not_per_shape(caplog):
  """GoogLeNet has 57 distinct parameter shapes; built eagerly with JAX's initialisers it
  compiled 125 programs (24 s on 2 CPU cores), with `nn.init` 29."""
  import logging
  caplog.set_level(logging.WARNING, logger="jax")
  jax.clear_caches()
  with jax.log_compiles(True):
    create_model("googlenet_aux", rngs=nnx.Rngs(0), num_classes=8, input_size=32)
  compiled = [r for r in caplog.records if "Compiling" in r.getMessage()]
  assert len(compiled) <= 32, [r.getMessage()[:60] for r in compiled]


def test_abstract_models_are_eval_shapes_without_asking_tracers_for_their_sharding(
    monkeypatch):
  """An abstract build (`create_model(abstract=True)`, `param_count`) has the shapes,
  dtypes and variables of `nnx.eval_shape` with `nnx.Rngs(0)`, and never builds a
  tracer's error message (each walked the whole trace: EfficientNet-B7 took 9.4 s)."""
  from functools import partial

  from jax._src.interpreters import partial_eval

  from cnn_lab.models.registry import _REGISTRY, _abstract_build_rngs
  calls = []
  real = partial_eval.DynamicJaxprTracer._origin_msg
  monkeypatch.setattr(partial_eval.DynamicJaxprTracer, "_origin_msg",
                      lambda self: calls.append(1) or real(self))
  ours = create_model("efficientnet_b0", rngs=None, abstract=True, num_classes=8)
  assert not calls  # dropout and stochastic depth keep streams: their counts are here too
  theirs = nnx.eval_shape(lambda: _REGISTRY["efficientnet_b0"](rngs=nnx.Rngs(0),
                                                               num_classes=8))
  assert calls  # flax's own path does build them
  shapes = lambda m: jax.tree.map(lambda v: (v.shape, v.dtype), nnx.state(m))
  assert shapes(ours) == shapes(theirs)
  # the keys drawn are nnx.Rngs(0)'s: built concretely, the same parameters
  lenet = partial(_REGISTRY["lenet5"], num_classes=10)
  for a, b in zip(jax.tree.leaves(nnx.state(lenet(rngs=_abstract_build_rngs()))),
                  jax.tree.leaves(nnx.state(lenet(rngs=nnx.Rngs(0))))):
    np.testing.assert_array_equal(a, b)


def test_abstract_build_streams_hand_out_counts_their_next_draw_does_not_change():
  """A draw reads its stream's count and then advances it; the count it read must not
  move with it (numpy counts were advanced in place, and on CPU JAX may use a numpy
  buffer uncopied, so a draw still queued read the advanced count: CI built a LeNet-5
  whose keys were not `Rngs(0)`'s)."""
  from cnn_lab.models.registry import _abstract_build_rngs
  rngs = _abstract_build_rngs()
  read = rngs.params.count[...]
  rngs.params()
  assert int(read) == 0 and int(rngs.params.count[...]) == 1


def test_batch_norm_in_a_traced_step_updates_as_flaxs_without_asking_tracers_for_sharding(
    monkeypatch):
  """Our BatchNorm's statistics (`RunningStat`) are stored without flax's sharding check,
  whose question to a tracer walked the trace (2.8 s of EfficientNet-B0's step); output
  and updated statistics equal flax's own BatchNorm's, bit for bit."""
  from jax._src.interpreters import partial_eval

  from cnn_lab.nn.layers import BatchNorm
  calls = []
  real = partial_eval.DynamicJaxprTracer._origin_msg
  monkeypatch.setattr(partial_eval.DynamicJaxprTracer, "_origin_msg",
                      lambda self: calls.append(1) or real(self))
  ours = BatchNorm(4, momentum=0.8, rngs=nnx.Rngs(0))
  theirs = nnx.BatchNorm(4, momentum=0.8, epsilon=1e-5, rngs=nnx.Rngs(0))
  x = jax.random.normal(jax.random.key(1), (6, 3, 3, 4)) * 3 + 1
  y = nnx.jit(lambda m, x: m(x, train=True))(ours, x)
  assert not calls
  np.testing.assert_array_equal(
      y, nnx.jit(lambda m, x: m(x, use_running_average=False))(theirs, x))
  for a, b in ((ours.mean, theirs.mean), (ours.var, theirs.var)):
    np.testing.assert_array_equal(a[...], b[...])
  assert float(jnp.abs(ours.mean[...]).max()) > 0.1  # the statistics did move
  np.testing.assert_array_equal(ours(x), theirs(x, use_running_average=True))


@pytest.mark.parametrize("name,classifier_std", [
    ("mobilenet_v2", 0.01), ("efficientnet_b0", 1 / np.sqrt(8) / np.sqrt(3))])
def test_mobilenets_and_efficientnet_start_as_torchvision_initialises(name, classifier_std):
  """torchvision's `kaiming_normal_(mode="fan_out")`: std sqrt(2 / (O * kh * kw)), for a
  depthwise kernel O = C (the lecun default, fan-in, gave it sqrt(1 / 9) and MobileNet v1
  memorised `shapes` instead of learning it); the classifier N(0, 0.01) or, EfficientNet's,
  U(+-1 / sqrt(classes)). `init="lecun"` keeps flax's default."""
  model = create_model(name, rngs=nnx.Rngs(0), num_classes=8, input_size=32)
  block = model.blocks[1]  # expand 1x1 16 -> 96, depthwise 3x3 96
  std = lambda layer: float(np.std(layer.conv.kernel[...]))
  assert std(block.depthwise) == pytest.approx(np.sqrt(2 / (9 * 96)), rel=0.05)
  assert std(block.expand) == pytest.approx(np.sqrt(2 / 96), rel=0.05)
  assert float(np.std(model.fc.kernel[...])) == pytest.approx(classifier_std, rel=0.1)
  lecun = create_model(name, rngs=nnx.Rngs(0), num_classes=8, input_size=32, init="lecun")
  assert std(lecun.blocks[1].depthwise) == pytest.approx(1 / 3, rel=0.05)
  with pytest.raises(InputError, match=r"init: expected one of \('torchvision', 'lecun', 'he'\)"):
    create_model(name, rngs=nnx.Rngs(0), num_classes=8, input_size=32, init="xavier")


def test_cifar_resnets_take_the_papers_initialisation():
  """`init="he"` (He et al. 2015, which the CIFAR ResNets' paper cites): every kernel
  N(0, 2 / fan-in), the classifier's too; the default stays flax's lecun (fan-in, 1 / fan-in),
  so the measured zoo results hold; other names are refused."""
  he = create_model("plain56_cifar", rngs=nnx.Rngs(0), num_classes=8, input_size=32, init="he")
  lecun = create_model("plain56_cifar", rngs=nnx.Rngs(0), num_classes=8, input_size=32)
  std = lambda kernel: float(np.std(kernel[...]))
  for model, gain in ((he, 2.0), (lecun, 1.0)):
    assert std(model.blocks[20].conv1.conv.kernel) == pytest.approx(np.sqrt(gain / 576), rel=0.03)
    assert std(model.fc.kernel) == pytest.approx(np.sqrt(gain / 64), rel=0.1)
  with pytest.raises(InputError, match=r"init: expected one of \('lecun', 'he'\)"):
    create_model("resnet20_cifar", rngs=nnx.Rngs(0), num_classes=8, input_size=32,
                 init="torchvision")


def test_efficientnet_classifier_init_fan_in_is_pytorch_linears_bound():
  """`classifier_init="fan_in"`: U(+-1 / sqrt(1280)) whatever the classes (torchvision's
  U(+-1 / sqrt(classes)) is 12x wider at 8 classes); anything else is refused."""
  model = create_model("efficientnet_b0", rngs=nnx.Rngs(0), num_classes=8, input_size=32,
                       classifier_init="fan_in")
  kernel = np.asarray(model.fc.kernel[...])
  assert np.abs(kernel).max() <= 1 / np.sqrt(1280)
  assert kernel.std() == pytest.approx(1 / np.sqrt(1280) / np.sqrt(3), rel=0.1)
  with pytest.raises(InputError, match=r"classifier_init: expected one of \('torchvision', "
                                       r"'fan_in'\), received 'he'"):
    create_model("efficientnet_b0", rngs=nnx.Rngs(0), num_classes=8, input_size=32,
                 classifier_init="he")


@pytest.mark.parametrize("name", ["mobilenet_v2", "efficientnet_b0"])
def test_zero_init_residual_starts_each_residual_block_as_the_identity(name):
  """`zero_init_residual`: the last BatchNorm of every residual branch starts at scale 0,
  so each block with a shortcut returns its input (the others are unchanged)."""
  model = create_model(name, rngs=nnx.Rngs(0), num_classes=8, input_size=32,
                       zero_init_residual=True)
  plain = create_model(name, rngs=nnx.Rngs(0), num_classes=8, input_size=32)
  residual = [i for i, b in enumerate(model.blocks) if b.use_residual]
  assert residual and all(not model.blocks[i].project.bn.scale[...].any() for i in residual)
  block = model.blocks[residual[0]]
  x = jax.random.normal(jax.random.key(1), (2, 8, 8, block.project.conv.out_features))
  np.testing.assert_array_equal(block(x), x)
  assert plain.blocks[residual[0]].project.bn.scale[...].all()
