"""The shared recipe for the embedded `shapes` dataset: the family configs
(`alexnet_shapes.py`, `yolo_shapes.py`, ...) call `shapes_config` with their model and
changes, and `shapes_presets` for :test, :gpu, :tpu and their own presets."""

import ml_collections

from cnn_lab.train.configs import make_config, merge


SHAPES_MEAN, SHAPES_STD = 0.45, 0.25  # the pixels' normalisation (x / 255 - mean) / std


def shapes_config(task: str = "classification", *, model: dict, size: int,
                  **changes) -> ml_collections.ConfigDict:
  """The shapes recipe at `size` x `size` for `task`, with the family's `changes`."""
  dataset = f"shapes/single_{size if size in (32, 64, 128, 224) else 64}"
  recipe = dict(
      dataset=dict(name=dataset, image_size=size, mean=SHAPES_MEAN, std=SHAPES_STD),
      model=model,
      optimizer=dict(learning_rate=2e-3, grad_clip_norm=1.0),
      eval_batch_size=100, num_epochs=6.0, log_every_steps=50, eval_every_steps=250,
      checkpoint_every_steps=500, keep_checkpoints=2)
  return make_config(task, **merge(recipe, changes))


def three_steps(c):
  """The tests' run of a config: 3 steps of 8 and one evaluation batch (the first 200
  test images): compiling is most of a test's time."""
  c.dataset.eval_split = "test[:200]"
  c.num_train_steps, c.batch_size, c.eval_batch_size = 3, 8, 200
  c.log_every_steps = c.eval_every_steps = c.checkpoint_every_steps = 3
  c.schedule.warmup_steps = 1
  c.model.impl = "xla"  # the scratch layers compile 2x slower; tests/test_ops_* check them


def _test(size: int):
  def preset(c):  # `three_steps` at `size`, the smallest the model accepts
    c.dataset.name, c.dataset.image_size = f"shapes/single_{size}", size
    three_steps(c)
  return preset


def _accelerator(batch: int, lr_factor: float):
  """bfloat16 compute and a bigger global batch (a multiple of the chips), the learning
  rate scaled by sqrt(batch ratio) as usual for Adam; epochs unchanged, so the same
  number of examples is seen. Data and workdir may be gs:// paths."""
  def preset(c):
    c.local_devices = 0  # every chip of the host (a family may have chosen 1 for CPUs)
    c.compute_dtype = "bfloat16"
    c.model.impl = "xla"  # `scratch` depthwise layers are a CPU workaround
    c.batch_size, c.eval_batch_size = batch, batch
    c.optimizer.learning_rate *= lr_factor
    c.log_every_steps, c.eval_every_steps = 10, 50
  return preset


# On 2 CPU cores the launcher splits each batch over 2 host devices. For these families
# one device trains faster: every step's optimizer update is replicated on each device and
# the gradients all-reduced, which costs more than the split saves. 40 steps of each
# default config, training time on 1 vs 2 devices (2-core Xeon): AlexNet 24.9 vs 105.6 s
# (4.2x), EfficientNet-B0 57.5 vs 92.3 s, MobileNetV2 30.4 vs 49.0 s, VGG-11 75.6 vs
# 118.7 s, GoogLeNet 39.5 vs 44.6 s; ResNet-20 17.2 vs 13.6 s (it keeps both).
ONE_CPU_DEVICE = {"local_devices": 1}

# one GPU; a TPU v5e-8 or v4-8 slice
ACCELERATORS = {"gpu": _accelerator(256, 2.0), "tpu": _accelerator(1024, 4.0)}


def shapes_presets(test_size: int = 32, **family) -> dict:
  """:test (3 steps at `test_size`), :gpu, :tpu and the `family`'s presets."""
  return {"test": _test(test_size), **ACCELERATORS, **family}
