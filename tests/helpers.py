"""Shared test helpers: small configs, reading back checkpoints, random inputs."""

import os
import sys

import jax
import numpy as np
import orbax.checkpoint as ocp

from cnn_lab.train.launch import load_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, "experiments", "configs", "lenet5_digits.py")


def normal(seed: int, shape) -> jax.Array:
  """float32 standard-normal test input of `shape`, drawn on the host. (Eager
  `jax.random.normal` compiles a program per shape, 0.5-1 s each here: the property
  tests, which draw new shapes every example, spent a third of their time on it.)"""
  return jax.numpy.asarray(np.random.default_rng(seed).standard_normal(shape, np.float32))


def small_config(**overrides):
  config = load_config(CONFIG + ":test")
  for key, value in overrides.items():
    node = config
    *parents, leaf = key.split(".")
    for p in parents:
      node = node[p]
    node[leaf] = value
  return config


def saved_state(workdir: str, step: int | None = None) -> dict:
  """The raw arrays of a saved train state (latest step by default)."""
  root = os.path.join(workdir, "checkpoints")
  steps = sorted(int(d) for d in os.listdir(root) if d.isdigit())
  step = steps[-1] if step is None else step
  path = os.path.join(root, str(step), "state")
  checkpointer = ocp.StandardCheckpointer()
  # onto this process's first device, whatever mesh the run saved from
  device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device),
                        checkpointer.metadata(path).item_metadata.tree)
  return checkpointer.restore(path, target)


def assert_trees_bitwise_equal(a, b) -> None:
  la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for x, y in zip(la, lb):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def launcher(workdir: str, *flags: str, preset: str = "test") -> list[str]:
  return [sys.executable, "-m", "experiments.train", f"--config={CONFIG}:{preset}",
          f"--workdir={workdir}", *flags]
