"""Per-example augmentations move boxes, landmarks and masks with the pixels."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnn_lab.data import augment as A
from cnn_lab.train.tasks.classification import Classification


def blob_example(h=32, w=40):
  image = np.zeros((h, w, 3), np.float32)
  seg = np.zeros((h, w), np.int32)
  image[8:16, 10:22] = 1.0
  seg[8:16, 10:22] = 3
  box = np.array([[10 / w, 8 / h, 22 / w, 16 / h], [0, 0, 0, 0]], np.float32)  # + padding
  centre = np.array([[[16 / w, 12 / h]], [[0, 0]]], np.float32)
  return {"image": jnp.asarray(image), "segmentation": jnp.asarray(seg),
          "boxes": jnp.asarray(box), "landmarks": jnp.asarray(centre)}


AUGMENTATIONS = {
    "flip": functools.partial(A.random_flip, horizontal=True, vertical=True),
    "rotation": functools.partial(A.random_rotation, factor=0.1),
    "scale": functools.partial(A.random_scale, max_scale=0.3),
    "pad_and_crop": functools.partial(A.pad_and_crop, pad=4),
    "resized_crop": functools.partial(A.random_resized_crop, size=24, scale=(0.5, 1.0)),
}


@pytest.mark.parametrize("name", sorted(AUGMENTATIONS))
def test_annotations_follow_the_pixels(name):
  fn = jax.jit(AUGMENTATIONS[name])
  for seed in range(4):
    out = fn(jax.random.key(seed), blob_example())
    seg = np.asarray(out["segmentation"])
    h, w = seg.shape
    ys, xs = np.nonzero(seg == 3)
    if len(xs) < 4:  # the crop missed the blob
      continue
    box = np.asarray(out["boxes"][0]) * [w, h, w, h]
    # The moved box encloses the moved mask (1 px tolerance for nearest sampling).
    assert box[0] - 1 <= xs.min() and xs.max() + 1 <= box[2] + 1, (name, seed)
    assert box[1] - 1 <= ys.min() and ys.max() + 1 <= box[3] + 1, (name, seed)
    # The landmark at the blob's centre lands at the moved mask's centre.
    centre = np.asarray(out["landmarks"][0, 0]) * [w, h]
    np.testing.assert_allclose(centre, [xs.mean() + 0.5, ys.mean() + 0.5], atol=1.0)
    np.testing.assert_array_equal(out["boxes"][1], 0)  # padding stays padding
    # The image moved with the mask.
    assert float(np.asarray(out["image"])[seg == 3].mean()) > 0.8


def test_vmapped_batch_and_color_jitter_range():
  batch = jax.tree.map(lambda a: jnp.stack([a] * 3), blob_example())
  keys = jax.random.split(jax.random.key(0), 3)
  # jitted, as the pipeline runs them (op by op, this test compiled ~130 programs)
  out = jax.jit(jax.vmap(lambda k, e: A.random_rotation(k, e, 0.2)))(keys, batch)
  assert out["image"].shape == (3, 32, 40, 3)
  assert not np.allclose(out["image"][0], out["image"][1])  # independent draws
  jittered = jax.jit(functools.partial(A.color_jitter, brightness=0.3, contrast=0.3,
                                       saturation=0.3, hue=0.1))(jax.random.key(1),
                                                                 blob_example())
  assert float(jittered["image"].min()) >= 0 and float(jittered["image"].max()) <= 1
  np.testing.assert_array_equal(jittered["segmentation"], blob_example()["segmentation"])


def test_runs_on_the_host_inside_a_grain_map():
  import grain
  examples = [jax.tree.map(np.asarray, blob_example()) for _ in range(3)]
  augment = jax.jit(functools.partial(A.random_scale, max_scale=0.2))
  ds = grain.MapDataset.source(examples).map_with_index(
      lambda i, e: jax.tree.map(np.asarray, augment(jax.random.key(i), e)))
  out = [ds[i] for i in range(3)]
  assert out[0]["image"].shape == (32, 40, 3) and isinstance(out[0]["boxes"], np.ndarray)
  np.testing.assert_array_equal(ds[1]["image"], out[1]["image"])  # deterministic per index


@pytest.mark.parametrize("flips,axis", [(dict(hflip=True), 2), (dict(vflip=True), 1)])
def test_classification_flips_mirror_some_images_and_keep_labels(flips, axis):
  images = jax.random.uniform(jax.random.key(0), (32, 8, 8, 3))
  batch = {"image": images, "label": jnp.arange(32)}
  out = Classification(**flips).augment(batch, jax.random.key(1))
  same = np.all(np.asarray(out["image"] == images), axis=(1, 2, 3))
  mirrored = np.all(np.asarray(out["image"] == jnp.flip(images, axis)), axis=(1, 2, 3))
  assert np.all(same | mirrored) and same.any() and mirrored.any()
  np.testing.assert_array_equal(out["label"], batch["label"])
  assert Classification().augment(batch, jax.random.key(1)) == batch  # off: untouched
