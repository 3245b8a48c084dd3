"""What a ConvNet learned: first-layer filters, top-activating dataset patches cropped to
the unit's receptive field (Zeiler and Fergus 2014), activation maps, saliency maps
(Simonyan et al. 2014). Layers are named by their path in the model ("blocks.3").
"""

from __future__ import annotations

import contextlib

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from PIL import Image

from cnn_lab.errors import fail


class _Tap(nnx.Module):
  """Wraps a layer; sows its output as an `nnx.Intermediate`."""

  def __init__(self, inner):
    self.inner = inner

  def __call__(self, *args, **kwargs):
    y = self.inner(*args, **kwargs)
    self.sow(nnx.Intermediate, "output", y)
    return y


def _parent_and_key(model, path: str):
  parts = path.split(".")
  node = model
  for part in parts[:-1]:
    node = node[int(part)] if part.isdigit() else getattr(node, part, None)
    if node is None:
      break
  last = parts[-1]
  try:
    child = node[int(last)] if last.isdigit() else getattr(node, last)
  except (AttributeError, IndexError, TypeError):
    child = None
  if not isinstance(child, nnx.Module):
    names = [".".join(map(str, p)) for p, m in nnx.iter_graph(model)
             if isinstance(m, nnx.Module) and p and len(p) <= 3]
    raise fail("layer", f"a module path of the model, e.g. {names[:12]}", path)
  return node, (int(last) if last.isdigit() else last)


@contextlib.contextmanager
def _tapped(model, paths):
  replaced = []
  try:
    for path in paths:
      parent, key = _parent_and_key(model, path)
      inner = parent[key] if isinstance(key, int) else getattr(parent, key)
      tap = _Tap(inner)
      if isinstance(key, int):
        parent[key] = tap
      else:
        setattr(parent, key, tap)
      replaced.append((parent, key, inner))
    yield
  finally:
    for parent, key, inner in reversed(replaced):
      if isinstance(key, int):
        parent[key] = inner
      else:
        setattr(parent, key, inner)


def tapped_function(model, paths):
  """A pure, jit- and grad-able `f(images) -> (logits, {path: output})` (inference mode)."""
  with _tapped(model, paths):
    graphdef, state = nnx.split(model)

  def forward(images):
    logits, sown = nnx.capture(nnx.merge(graphdef, state), nnx.Intermediate)(images)
    found = {}
    for path_tuple, variable in nnx.to_flat_state(sown):  # (..., "output"): one per call
      value = variable.get_value() if hasattr(variable, "get_value") else variable
      found[".".join(str(p) for p in path_tuple[:-1])] = \
          value[0] if isinstance(value, tuple) else value
    return logits, {p: found[p] for p in paths}

  return forward


def activations(model, images, paths) -> dict[str, jax.Array]:
  """Outputs of the layers `paths` for `images` `[N, H, W, C]` (inference mode)."""
  return jax.jit(tapped_function(model, paths))(jnp.asarray(images))[1]


def receptive_field(model, path: str, input_shape) -> tuple[int, int, int, float]:
  """-> (size, top, left, stride): unit (i, j) of layer `path` sees the input window of
  `size` pixels whose corner is (top + i * stride, left + j * stride). Found as the
  support of the centre unit's gradient w.r.t. the input; stride = input / feature size."""
  h, w, c = input_shape
  x = jnp.asarray(np.random.default_rng(0).normal(size=(1, h, w, c)), jnp.float32)
  forward = tapped_function(model, [path])
  fh, fw = jax.eval_shape(forward, x)[1][path].shape[1:3]
  ci, cj = fh // 2, fw // 2

  def unit(x):
    return jnp.sum(forward(x)[1][path][0, ci, cj])

  # jitted, as every model call here: run eagerly, each op of the network and of its
  # gradient is compiled on its own (a third of `experiments.visualize`'s time)
  grad = np.abs(np.asarray(jax.jit(jax.grad(unit))(x)))[0].sum(-1)
  rows, cols = np.nonzero(grad > 0)
  stride = h / fh
  size = int(max(rows.max() - rows.min(), cols.max() - cols.min()) + 1)
  return size, int(rows.min() - ci * stride), int(cols.min() - cj * stride), stride


def top_patches(model, images: np.ndarray, shown: np.ndarray, path: str, units, k: int = 9,
                batch: int = 32) -> dict[int, list[np.ndarray]]:
  """For each channel in `units`: the `k` crops of `shown` (the displayable `[N, H, W, C]`
  twins of the model inputs `images`) whose images activate it most (the best position
  per image, so each crop comes from a different image), cropped to the unit's
  receptive field and clipped to the image."""
  size, top, left, stride = receptive_field(model, path, images.shape[1:])
  forward = jax.jit(tapped_function(model, [path]))
  best = {u: [] for u in units}  # (value, image index, i, j)
  for start in range(0, len(images), batch):
    feature = np.asarray(forward(jnp.asarray(images[start:start + batch]))[1][path])
    for u in units:
      maps = feature[..., u]
      flat = maps.reshape(len(maps), -1)
      where = flat.argmax(1)
      for n, pos in enumerate(where):
        i, j = divmod(int(pos), maps.shape[2])
        best[u].append((float(flat[n, pos]), start + n, i, j))
  h, w = images.shape[1:3]
  crops = {}
  for u in units:
    chosen = sorted(best[u], reverse=True)[:k]
    crops[u] = []
    for _, n, i, j in chosen:
      y0, x0 = int(round(top + i * stride)), int(round(left + j * stride))
      y0c, x0c = max(y0, 0), max(x0, 0)
      crops[u].append(shown[n, y0c:min(y0 + size, h), x0c:min(x0 + size, w)])
  return crops


def first_conv_kernel(model, input_shape) -> np.ndarray:
  """The kernel `[k, k, C_in, C_out]` of the first convolution the model applies."""
  from cnn_lab.models.summary import trace_rows
  rows, _ = trace_rows(model, input_shape)
  path = next(r.name for r in rows if r.kind == "conv").replace("/", ".")
  parent, key = _parent_and_key(model, path)
  layer = parent[key] if isinstance(key, int) else getattr(parent, key)
  return np.asarray(layer.kernel[...])


def saliency(model, image, class_index: int | None = None):
  """|d score / d pixel|, max over colour channels: `[H, W]`, and the class used."""
  x = jnp.asarray(image)[None]

  def score(x):  # the class's logit and the class: one forward pass picks and scores it
    logits = model(x)[0]
    c = jnp.argmax(logits) if class_index is None else class_index
    return logits[c], c

  grad, c = jax.jit(jax.grad(score, has_aux=True))(x)
  return np.asarray(jnp.max(jnp.abs(grad[0]), -1)), int(c)


def to_tile(array, size: int = 64, cmap: str | None = None) -> Image.Image:
  """A 2-D map (normalised, optional matplotlib colour map) or an RGB image (normalised
  to its range) -> a `size` x `size` PIL image."""
  a = np.asarray(array, np.float32)
  if a.ndim == 2:  # maps: clip at the 99.5th percentile so a few peaks do not hide the rest
    a = np.minimum(a, np.percentile(a, 99.5))
  a = (a - a.min()) / max(float(a.max() - a.min()), 1e-12)
  if a.ndim == 2:
    if cmap:
      import matplotlib
      a = matplotlib.colormaps[cmap](a)[..., :3]
    else:
      a = np.repeat(a[..., None], 3, -1)
  return Image.fromarray((a * 255).round().astype(np.uint8)).resize((size, size),
                                                                      Image.NEAREST)
