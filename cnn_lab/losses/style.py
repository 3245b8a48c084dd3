"""Neural style transfer's costs (Gatys et al. 2015, as the course defines them).

Activations are `[H, W, C]` or `[N, H, W, C]` (a batch is summed over); n_H, n_W, n_C
are the layer's height, width and channels.
"""

from __future__ import annotations

import jax.numpy as jnp

from cnn_lab.errors import fail


def _check_pair(a_x, a_g, names=("a_C", "a_G")) -> None:
  if jnp.shape(a_x) != jnp.shape(a_g):
    raise fail(names[1], f"the shape of {names[0]} {tuple(jnp.shape(a_x))}",
               tuple(jnp.shape(a_g)))
  if jnp.ndim(a_x) not in (3, 4):
    raise fail(names[0], "activations [H, W, C] or [N, H, W, C]", tuple(jnp.shape(a_x)))


def content_cost(a_C, a_G):
  """sum((a_C - a_G)^2) / (4 n_H n_W n_C)."""
  _check_pair(a_C, a_G)
  h, w, c = jnp.shape(a_C)[-3:]
  return jnp.sum((a_C - a_G) ** 2) / (4.0 * h * w * c)


def gram_matrix(a):
  """A A^T with A the activations reshaped to (n_C, n_H n_W): `[C, C]` for `[H, W, C]`,
  `[N, C, C]` for `[N, H, W, C]`; unnormalised."""
  if jnp.ndim(a) not in (3, 4):
    raise fail("a", "activations [H, W, C] or [N, H, W, C]", tuple(jnp.shape(a)))
  flat = a.reshape(*a.shape[:-3], -1, a.shape[-1])  # [..., n_H n_W, n_C]
  return jnp.einsum("...pc,...pd->...cd", flat, flat)


def layer_style_cost(a_S, a_G):
  """sum((G_S - G_G)^2) / (4 n_C^2 (n_H n_W)^2)."""
  _check_pair(a_S, a_G, ("a_S", "a_G"))
  h, w, c = jnp.shape(a_S)[-3:]
  return jnp.sum((gram_matrix(a_S) - gram_matrix(a_G)) ** 2) / (4.0 * c ** 2 * (h * w) ** 2)


def style_cost(style_activations: dict, generated_activations: dict, weights: dict):
  """sum over layers of weights[layer] x layer_style_cost."""
  missing = [k for k in weights if k not in style_activations or k not in generated_activations]
  if missing:
    raise fail("weights", f"layers among {sorted(style_activations)}", missing)
  return sum(w * layer_style_cost(style_activations[k], generated_activations[k])
             for k, w in weights.items())


def total_variation(image):
  """Sum of absolute differences between neighbouring pixels of `[..., H, W, C]`."""
  return jnp.sum(jnp.abs(jnp.diff(image, axis=-3))) + jnp.sum(jnp.abs(jnp.diff(image, axis=-2)))


def total_cost(J_content, J_style, alpha: float = 10.0, beta: float = 40.0, tv=0.0,
               tv_weight: float = 0.0):
  """alpha J_content + beta J_style (+ tv_weight x total variation)."""
  return alpha * J_content + beta * J_style + tv_weight * tv
