"""The shared recipe for classifying the embedded `shapes` dataset; the family configs
(`alexnet_shapes.py`, `resnet_shapes.py`, ...) call `shapes_config` with their model."""

import ml_collections


def shapes_config(model: str, size: int, *, batch_size: int = 64, epochs: float = 6.0,
                  learning_rate: float = 2e-3, test_size: int = 32,
                  **model_kwargs) -> ml_collections.ConfigDict:
  """`test_size`: the smallest shapes size the model accepts, used by the :test preset."""
  c = ml_collections.ConfigDict()
  c.test_size = test_size
  c.task = "classification"
  c.seed = 0
  dataset = f"shapes/single_{size if size in (32, 64, 128, 224) else 64}"
  c.dataset = ml_collections.ConfigDict(dict(
      name=dataset, data_dir="", cache=True, image_size=size, mean=0.45, std=0.25,
      resize_method="resize"))
  model_kwargs.setdefault("impl", "xla")
  c.model = ml_collections.ConfigDict(dict(name=model, **model_kwargs))
  c.augment = ml_collections.ConfigDict(dict(max_rotation=0.0, max_scale=0.0, max_shift=0.0,
                                             fill=0.0))
  c.loss = ml_collections.ConfigDict(dict(label_smoothing=0.0))
  c.optimizer = ml_collections.ConfigDict(dict(
      name="adamw", learning_rate=learning_rate, weight_decay=1e-4, b1=0.9, b2=0.999,
      momentum=0.9, nesterov=False, grad_clip_norm=1.0))
  c.schedule = ml_collections.ConfigDict(dict(
      name="warmup_cosine", warmup_steps=100, end_factor=0.0, boundaries=(0.5, 0.75),
      scales=(0.1, 0.1)))
  c.batch_size = batch_size
  c.eval_batch_size = 100
  c.local_devices = 0  # per process, 0: all (on CPU: as many as divide the batches)
  c.compute_dtype = "float32"  # or "bfloat16": activations; parameters stay float32
  c.num_epochs = epochs
  c.num_train_steps = -1
  c.log_every_steps = 50
  c.eval_every_steps = 250
  c.checkpoint_every_steps = 500
  c.keep_checkpoints = 2
  return c


# preset: (global batch, learning-rate factor) for one GPU / a TPU v5e-8 or v4-8 slice
ACCELERATORS = {"gpu": (256, 2.0), "tpu": (1024, 4.0)}


def accelerator(c: ml_collections.ConfigDict, batch: int, lr_factor: float) -> None:
  """bfloat16 compute and a bigger global batch (a multiple of the chips), the learning
  rate scaled by sqrt(batch ratio) as usual for Adam; epochs unchanged, so the same
  number of examples is seen. Data and workdir may be gs:// paths."""
  c.compute_dtype = "bfloat16"
  c.model.impl = "xla"  # `scratch` depthwise layers are a CPU workaround
  c.batch_size, c.eval_batch_size = batch, batch
  c.optimizer.learning_rate *= lr_factor
  c.log_every_steps, c.eval_every_steps = 10, 50


def apply_presets(c: ml_collections.ConfigDict, arg: str | None, extra: dict | None = None):
  """`test`: 3 steps at `test_size` for the tests; `gpu`, `tpu`: see `accelerator`;
  `extra`: family presets."""
  for preset in (arg or "").split(","):
    if not preset:
      continue
    if preset == "test":
      c.dataset.name, c.dataset.image_size = f"shapes/single_{c.test_size}", c.test_size
      c.num_train_steps, c.batch_size, c.eval_batch_size = 3, 8, 200
      c.log_every_steps = c.eval_every_steps = c.checkpoint_every_steps = 3
      c.schedule.warmup_steps = 1
    elif preset in ACCELERATORS:
      accelerator(c, *ACCELERATORS[preset])
    elif extra and preset in extra:
      extra[preset](c)
    else:
      valid = ["test", *ACCELERATORS, *(extra or {})]
      raise ValueError(f"preset: expected one of {valid}, received {preset!r}")
  return c
