"""Batched random affine augmentation in pure JAX, run inside the jitted train step.

Why on device and not in grain: on a 2-core CPU, per-example numpy warps cost
~35 us each plus grain's per-record overhead, which made the input pipeline
slower than a LeNet-5 step; here the warp is one vectorised gather fused into
the step, free on accelerators, and deterministic from (seed, step), so a
resumed run sees the very same augmented pixels.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def affine_matrices(rng, n: int, *, max_rotation: float, max_scale: float,
                    max_shift: float):
  """Random inverse transforms `[n, 2, 2]` and shifts `[n, 2]` (output -> input coords)."""
  k_rot, k_scale, k_shift = jax.random.split(rng, 3)
  angle = jnp.deg2rad(jax.random.uniform(k_rot, (n,), minval=-max_rotation,
                                         maxval=max_rotation))
  scale = 1.0 + jax.random.uniform(k_scale, (n,), minval=-max_scale, maxval=max_scale)
  shift = jax.random.uniform(k_shift, (n, 2), minval=-max_shift, maxval=max_shift)
  cos, sin = jnp.cos(angle) / scale, jnp.sin(angle) / scale
  inverse = jnp.stack([jnp.stack([cos, -sin], -1), jnp.stack([sin, cos], -1)], -2)
  return inverse, shift


def bilinear_sample(image, coords, fill: float = 0.0):
  """Samples `image: [H, W, C]` at `coords: [..., 2]` (row, col); `fill` outside."""
  h, w, _ = image.shape
  r, c = coords[..., 0], coords[..., 1]
  r0, c0 = jnp.floor(r), jnp.floor(c)
  out = 0.0
  for dr in (0, 1):
    for dc in (0, 1):
      rr, cc = r0 + dr, c0 + dc
      weight = (1 - jnp.abs(r - rr)) * (1 - jnp.abs(c - cc))
      inside = (rr >= 0) & (rr <= h - 1) & (cc >= 0) & (cc <= w - 1)
      pixel = image[jnp.clip(rr, 0, h - 1).astype(jnp.int32),
                    jnp.clip(cc, 0, w - 1).astype(jnp.int32)]
      out = out + (weight * inside)[..., None] * pixel + \
          (weight * ~inside)[..., None] * fill
  return out


def random_affine(images, rng, *, max_rotation: float = 0.0, max_scale: float = 0.0,
                  max_shift: float = 0.0, fill: float = 0.0):
  """Rotates (degrees), scales (fraction) and shifts (pixels) each image about its centre.

  `images: [N, H, W, C]` -> same shape; bilinear, `fill` outside the source image.
  """
  n, h, w, _ = images.shape
  inverse, shift = affine_matrices(rng, n, max_rotation=max_rotation, max_scale=max_scale,
                                   max_shift=max_shift)
  centre = jnp.array([(h - 1) / 2.0, (w - 1) / 2.0])
  grid = jnp.stack(jnp.meshgrid(jnp.arange(h), jnp.arange(w), indexing="ij"), -1)
  # input = A (output - centre - shift) + centre
  src = jnp.einsum("nij,hwj->nhwi", inverse, grid - centre) - \
      jnp.einsum("nij,nj->ni", inverse, shift)[:, None, None] + centre
  return jax.vmap(bilinear_sample, in_axes=(0, 0, None))(images, src, fill)


def random_flips(images, rng, *, boxes=None, masks=None, horizontal: bool = True,
                 vertical: bool = False):
  """Flips each image left-right and/or up-down with probability 1/2, its boxes and
  masks with it.

  images `[N, H, W, C]`; boxes `[N, M, 4]` normalised xyxy (padding rows are flipped
  too, harmlessly: they stay degenerate); masks `[N, H, W]`. -> (images, boxes, masks),
  None where none was given.
  """
  k_h, k_v = jax.random.split(rng)
  n = images.shape[0]
  for enabled, key, axis, (lo, hi) in ((horizontal, k_h, 2, (0, 2)), (vertical, k_v, 1, (1, 3))):
    if not enabled:
      continue
    flip = jax.random.bernoulli(key, 0.5, (n,))
    images = jnp.where(flip[:, None, None, None], jnp.flip(images, axis), images)
    if masks is not None:
      masks = jnp.where(flip[:, None, None], jnp.flip(masks, axis), masks)
    if boxes is not None:
      mirrored = boxes.at[..., lo].set(1.0 - boxes[..., hi]).at[..., hi].set(
          1.0 - boxes[..., lo])
      boxes = jnp.where(flip[:, None, None], mirrored, boxes)
  return images, boxes, masks


# ---- per-example augmentations: pure functions of (key, example), box- and mask-aware ----
#
# An example is a dict with `image` float `[H, W, C]` in [0, 1] and optionally `boxes`
# `[M, 4]` normalised (x1, y1, x2, y2) (rows of zeros are padding and stay so),
# `landmarks` `[M, L, 2]` normalised (x, y), and `segmentation` int `[H, W]`. Each
# function returns a new example; geometry moves every annotation with the pixels.
# They are jit- and vmap-able (`jax.vmap(fn, in_axes=(0, 0))(keys, batch)`) and run as
# well on the host inside a grain `map` (JAX on CPU).


def _warp(example: dict, matrix, offset, out_hw=None, fill: float = 0.0) -> dict:
  """Applies p_out = matrix @ p_in + offset (pixel coordinates, (x, y), pixel edges at
  integers) to the image (bilinear), segmentation (nearest, 0 outside), boxes and
  landmarks."""
  image = example["image"]
  h, w = image.shape[:2]
  oh, ow = out_hw or (h, w)
  inverse = jnp.linalg.inv(matrix)
  ys, xs = jnp.meshgrid(jnp.arange(oh) + 0.5, jnp.arange(ow) + 0.5, indexing="ij")
  q = jnp.stack([xs, ys], -1) - offset
  p = jnp.einsum("ij,hwj->hwi", inverse, q) - 0.5  # source pixel-centre coordinates
  out = dict(example)
  out["image"] = bilinear_sample(image, p[..., ::-1], fill)
  if "segmentation" in example:
    r, c = jnp.round(p[..., 1]).astype(jnp.int32), jnp.round(p[..., 0]).astype(jnp.int32)
    inside = (r >= 0) & (r < h) & (c >= 0) & (c < w)
    seg = example["segmentation"][jnp.clip(r, 0, h - 1), jnp.clip(c, 0, w - 1)]
    out["segmentation"] = jnp.where(inside, seg, 0)
  scale_in, scale_out = jnp.array([w, h], jnp.float32), jnp.array([ow, oh], jnp.float32)
  move = lambda pts: (jnp.einsum("ij,...j->...i", matrix, pts * scale_in) + offset) / scale_out
  if "boxes" in example:
    b = example["boxes"]
    corners = jnp.stack([b[:, [0, 1]], b[:, [2, 1]], b[:, [0, 3]], b[:, [2, 3]]], 1)
    moved = move(corners)
    new = jnp.clip(jnp.concatenate([moved.min(1), moved.max(1)], -1), 0.0, 1.0)
    real = jnp.any(b != 0, -1, keepdims=True)
    out["boxes"] = jnp.where(real, new, b)
  if "landmarks" in example:
    out["landmarks"] = move(example["landmarks"])
  return out


def _about_centre(example, linear, out_hw=None):
  h, w = example["image"].shape[:2]
  oh, ow = out_hw or (h, w)
  centre_in, centre_out = jnp.array([w / 2, h / 2]), jnp.array([ow / 2, oh / 2])
  return linear, centre_out - linear @ centre_in


def random_flip(key, example, *, horizontal: bool = True, vertical: bool = False) -> dict:
  """Mirrors left-right and/or up-down, each with probability 1/2."""
  k_h, k_v = jax.random.split(key)
  sign = lambda k, on: jnp.where(on & jax.random.bernoulli(k), -1.0, 1.0)
  linear = jnp.diag(jnp.stack([sign(k_h, horizontal), sign(k_v, vertical)]))
  return _warp(example, *_about_centre(example, linear))


def random_rotation(key, example, factor: float, *, fill: float = 0.0) -> dict:
  """Rotates about the centre by an angle drawn from [-factor, factor] x 2 pi (Keras's
  RandomRotation convention: `factor=0.1` is up to +-36 degrees)."""
  theta = jax.random.uniform(key, minval=-factor, maxval=factor) * 2 * jnp.pi
  c, s = jnp.cos(theta), jnp.sin(theta)
  return _warp(example, *_about_centre(example, jnp.array([[c, -s], [s, c]])), fill=fill)


def random_scale(key, example, max_scale: float, *, fill: float = 0.0) -> dict:
  """Zooms about the centre by a factor drawn from [1 - max_scale, 1 + max_scale]."""
  z = 1.0 + jax.random.uniform(key, minval=-max_scale, maxval=max_scale)
  return _warp(example, *_about_centre(example, z * jnp.eye(2)), fill=fill)


def pad_and_crop(key, example, pad: int, *, fill: float = 0.0) -> dict:
  """The CIFAR recipe: pad by `pad` pixels, crop back at a random offset (a shift by
  whole pixels in [-pad, pad])."""
  shift = jax.random.randint(key, (2,), -pad, pad + 1).astype(jnp.float32)
  return _warp(example, jnp.eye(2), shift, fill=fill)


def random_resized_crop(key, example, size: int, *, scale=(0.08, 1.0),
                        ratio=(3 / 4, 4 / 3)) -> dict:
  """Inception-style crop: a box of `scale` x the area and aspect ratio in `ratio`
  (log-uniform), clipped to the image, resized to `size` x `size`."""
  h, w = example["image"].shape[:2]
  k_area, k_ratio, k_x, k_y = jax.random.split(key, 4)
  area = jax.random.uniform(k_area, minval=scale[0], maxval=scale[1]) * h * w
  aspect = jnp.exp(jax.random.uniform(k_ratio, minval=jnp.log(ratio[0]),
                                      maxval=jnp.log(ratio[1])))
  cw = jnp.clip(jnp.sqrt(area * aspect), 1.0, w)
  ch = jnp.clip(jnp.sqrt(area / aspect), 1.0, h)
  x0 = jax.random.uniform(k_x) * (w - cw)
  y0 = jax.random.uniform(k_y) * (h - ch)
  linear = jnp.diag(jnp.array([size / cw, size / ch]))
  return _warp(example, linear, -linear @ jnp.array([x0, y0]), out_hw=(size, size))


def color_jitter(key, example, *, brightness: float = 0.0, contrast: float = 0.0,
                 saturation: float = 0.0, hue: float = 0.0) -> dict:
  """dm-pix's random brightness (+-delta), contrast and saturation (x [1 - f, 1 + f]) and
  hue (+-delta of a turn) on an RGB image in [0, 1], clipped back to [0, 1]."""
  import dm_pix as pix
  k_b, k_c, k_s, k_h = jax.random.split(key, 4)
  image = example["image"]
  if brightness:
    image = pix.random_brightness(k_b, image, brightness)
  if contrast:
    image = pix.random_contrast(k_c, image, 1 - contrast, 1 + contrast)
  if saturation:
    image = pix.random_saturation(k_s, image, 1 - saturation, 1 + saturation)
  if hue:
    image = pix.random_hue(k_h, image, hue)
  return {**example, "image": jnp.clip(image, 0.0, 1.0)}
