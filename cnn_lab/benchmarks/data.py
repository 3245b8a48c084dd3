"""Input pipeline speed against what the training step consumes, per training config.

The pipeline is the launcher's own (`build_experiment`: grain over the prepared
records, decoding, preprocessing, batching) plus the host-to-device transfer of
each global batch; the step is the config's jitted training step (on-device
augmentation included) on one such batch. A ratio >= 1 means the step never
waits for data; the rest of that margin is what a slower disk or heavier
decoding can take before it does.
"""

from __future__ import annotations

import time

from cnn_lab.benchmarks.train import seconds_per_step
from cnn_lab.train import mesh as mesh_lib
from cnn_lab.train.launch import load_config
from cnn_lab.train.experiment import build_experiment


def pipeline_seconds_per_batch(batches, mesh, count: int, warmup: int = 3) -> float:
  """Mean seconds per global batch over `count` batches of an iterator, after `warmup`."""
  for _ in range(warmup):
    mesh_lib.global_batch(next(batches), mesh)
  start = time.perf_counter()
  for _ in range(count):
    batch = mesh_lib.global_batch(next(batches), mesh)
  batch["image"].block_until_ready()
  return (time.perf_counter() - start) / count


def suite(quick: bool = False, configs: tuple[str, ...] = ()):
  """Yields one row per config spec (`path.py[:preset]`)."""
  for spec in configs:
    config = load_config(spec)
    exp = build_experiment(config)
    batches = exp.train_iterator()
    pipeline_s = pipeline_seconds_per_batch(batches, exp.mesh, 5 if quick else 50)
    batch = mesh_lib.global_batch(mesh_lib.stack_batches([next(batches)]), exp.mesh,
                                  stacked=True)
    step_s = seconds_per_step(exp.train_steps, exp.state, batch, 2 if quick else 5,
                              3 if quick else 5)
    yield {"suite": "data", "config": spec.rsplit("/", 1)[-1], "dataset": config.dataset.name,
           "model": config.model.name, "batch": config.batch_size,
           "pipeline_examples_per_s": config.batch_size / pipeline_s,
           "step_examples_per_s": config.batch_size / step_s,
           "pipeline_over_step": step_s / pipeline_s}
