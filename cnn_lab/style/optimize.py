"""Optimising the generated image: Adam or L-BFGS (optax), jit-compiled steps, the image
clipped to [0, 1] after each."""

from __future__ import annotations

import dataclasses
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from cnn_lab.errors import fail
from cnn_lab.losses.style import (content_cost, style_cost, total_cost, total_variation)


@dataclasses.dataclass
class StyleTransferResult:
  image: np.ndarray            # [H, W, 3] in [0, 1]
  history: list[dict]          # per step: step, content, style, total
  snapshots: list[tuple[int, np.ndarray]]
  seconds: float               # optimisation time, compilation excluded
  steps: int


def _check_inputs(extractor, content, style, content_layer: str, style_weights: dict,
                  optimizer: str) -> None:
  if content.ndim != 3 or style.ndim != 3 or content.shape[-1] != style.shape[-1]:
    raise fail("style", f"an image with the content's channels ({content.shape})",
               style.shape)
  if content.shape != style.shape:
    raise fail("style", f"the content's size {content.shape} (resize it first)", style.shape)
  if optimizer not in ("adam", "lbfgs"):
    raise fail("optimizer", "'adam' or 'lbfgs'", optimizer)
  for layer in (content_layer, *style_weights):
    if layer not in extractor.layers:
      raise fail("layer", f"one of the extractor's layers {list(extractor.layers)}", layer)


def _optimizer_step(costs, optimizer: str, learning_rate: float):
  """-> (optax transform, jitted step(image, opt_state) -> (image, opt_state, total cost,
  (content cost, style cost))); the image stays in [0, 1]."""
  if optimizer == "adam":
    tx = optax.adam(learning_rate)

    @jax.jit
    def step(image, opt_state):
      (total, parts), grad = jax.value_and_grad(costs, has_aux=True)(image)
      updates, opt_state = tx.update(grad, opt_state, image)
      return jnp.clip(optax.apply_updates(image, updates), 0.0, 1.0), opt_state, total, parts
    return tx, step
  tx = optax.lbfgs()
  value_and_grad = optax.value_and_grad_from_state(lambda x: costs(x)[0])

  @jax.jit
  def step(image, opt_state):
    total, grad = value_and_grad(image, state=opt_state)
    updates, opt_state = tx.update(grad, opt_state, image, value=total, grad=grad,
                                   value_fn=lambda x: costs(x)[0])
    parts = costs(image)[1]
    return jnp.clip(optax.apply_updates(image, updates), 0.0, 1.0), opt_state, total, parts
  return tx, step


def run_style_transfer(extractor, content, style, *, content_layer: str, style_weights: dict,
                       alpha: float = 10.0, beta: float = 40.0, tv_weight: float = 0.0,
                       noise_ratio: float = 0.2, steps: int = 200, optimizer: str = "adam",
                       learning_rate: float = 0.02, seed: int = 0, snapshots: int = 6,
                       progress=None) -> StyleTransferResult:
  """Generates an image with `content`'s content and `style`'s style.

  content, style: float `[H, W, 3]` in [0, 1] (the style image already at the content's
  size). The generated image starts as content + noise_ratio x U(-0.5, 0.5), clipped.
  """
  content, style = jnp.asarray(content, jnp.float32), jnp.asarray(style, jnp.float32)
  _check_inputs(extractor, content, style, content_layer, style_weights, optimizer)
  a_C = extractor(content[None])[content_layer]
  a_S = {k: v for k, v in extractor(style[None]).items() if k in style_weights}

  def costs(image):
    acts = extractor(image[None])
    j_content = content_cost(a_C, acts[content_layer])
    j_style = style_cost(a_S, acts, style_weights)
    tv = total_variation(image) if tv_weight else 0.0
    return total_cost(j_content, j_style, alpha, beta, tv, tv_weight), (j_content, j_style)

  noise = jax.random.uniform(jax.random.key(seed), content.shape, minval=-0.5, maxval=0.5)
  image = jnp.clip(content + noise_ratio * noise, 0.0, 1.0)
  tx, step = _optimizer_step(costs, optimizer, learning_rate)
  opt_state = tx.init(image)
  jax.block_until_ready(step(image, opt_state))  # compile outside the timing
  history, shots = [], []
  every = max(1, steps // max(snapshots, 1))
  start = time.perf_counter()
  for i in range(steps):
    if i % every == 0:
      shots.append((i, np.asarray(image)))
    image, opt_state, total, (j_c, j_s) = step(image, opt_state)
    history.append({"step": i, "content": float(j_c), "style": float(j_s),
                    "total": float(total)})  # costs of the image before this step
    if progress is not None:
      progress(i + 1, history[-1])
  seconds = time.perf_counter() - start
  final = costs(image)
  history.append({"step": steps, "content": float(final[1][0]), "style": float(final[1][1]),
                  "total": float(final[0])})
  shots.append((steps, np.asarray(image)))
  return StyleTransferResult(np.asarray(image), history, shots, seconds, steps)
