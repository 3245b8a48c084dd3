"""`digits`: scikit-learn's 1,797 real 8x8 handwritten digits as a TFDS builder.

The images ship inside scikit-learn (UCI's optical recognition of handwritten
digits, 43 writers), so the dataset is prepared offline in well under a second.
Pixel counts 0..16 are rescaled to uint8 0..255. A fixed stratified split holds
out 360 images (20%, 35 to 37 per class) as `test`; the other 1,437 are `train`.

Images are raw-byte `tfds.features.Tensor`s (`cnn_lab.data.features.pixels`), not
`Image`s, so that preparing needs no TensorFlow: there is nothing to encode.
"""

from __future__ import annotations

import numpy as np
import tensorflow_datasets as tfds

from cnn_lab.data.features import pixels

TEST_SIZE = 360
SPLIT_SEED = 0


def split_indices() -> dict[str, np.ndarray]:
  """The fixed stratified split: indices into `sklearn.datasets.load_digits()`."""
  from sklearn.datasets import load_digits
  from sklearn.model_selection import train_test_split
  labels = load_digits().target
  train, test = train_test_split(np.arange(len(labels)), test_size=TEST_SIZE,
                                 stratify=labels, random_state=SPLIT_SEED)
  return {"train": np.sort(train), "test": np.sort(test)}


class Digits(tfds.core.GeneratorBasedBuilder):
  """scikit-learn's handwritten digits, 8x8x1 uint8, 10 classes."""

  VERSION = tfds.core.Version("1.1.0")
  RELEASE_NOTES = {"1.0.0": "Stratified 1,437 / 360 split of sklearn.datasets.load_digits.",
                   "1.1.0": "Images stored as raw bytes (same values)."}

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=__doc__,
        features=tfds.features.FeaturesDict({
            "image": pixels((8, 8, 1)),
            "label": tfds.features.ClassLabel(num_classes=10),
        }),
        supervised_keys=("image", "label"),
        homepage="https://archive.ics.uci.edu/dataset/80",
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # nothing to download
    return {name: self._generate_examples(idx) for name, idx in split_indices().items()}

  def _generate_examples(self, indices):
    from sklearn.datasets import load_digits
    digits = load_digits()
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    for i in indices:
      yield int(i), {"image": images[i], "label": int(digits.target[i])}
