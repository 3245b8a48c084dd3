"""`digits`: scikit-learn's 1,797 real 8x8 handwritten digits as a TFDS builder.

The images ship inside scikit-learn (UCI's optical recognition of handwritten
digits, 43 writers), so the dataset is prepared offline in well under a second.
Pixel counts 0..16 are rescaled to uint8 0..255. A fixed stratified split holds
out 360 images (20%, 35 to 37 per class) as `test`; the other 1,437 are `train`.

Images are raw-byte `tfds.features.Tensor`s (`cnn_lab.data.features.pixels`), not
`Image`s, so that preparing needs no TensorFlow: there is nothing to encode.
"""

from __future__ import annotations

import importlib.util
import os

import numpy as np
import tensorflow_datasets as tfds

from cnn_lab.data.features import pixels

NUM_IMAGES = 1797
# The held-out 20%: `sklearn.model_selection.train_test_split(range(1797), test_size=360,
# stratify=labels, random_state=0)`'s test rows, written out because importing scikit-learn
# to recompute them took longer than the rest of preparing the dataset (0.55 s of 0.8 s);
# tests/test_data.py checks they are still what that call gives.
TEST_INDICES = (  # 360 rows of digits.csv.gz, sorted
    21, 24, 28, 34, 35, 37, 39, 42, 45, 51, 57, 77, 78, 81, 87, 96, 99, 102, 103, 105, 110, 117,
    119, 131, 132, 134, 148, 159, 170, 173, 186, 188, 197, 198, 202, 204, 205, 211, 214, 227, 240,
    243, 245, 252, 254, 264, 267, 275, 276, 279, 283, 286, 293, 298, 304, 305, 306, 307, 308, 312,
    314, 326, 328, 335, 339, 344, 346, 364, 372, 374, 376, 380, 386, 393, 397, 403, 405, 407, 410,
    413, 417, 420, 423, 425, 430, 433, 440, 442, 452, 454, 481, 493, 496, 497, 499, 500, 520, 527,
    528, 538, 553, 556, 565, 567, 568, 569, 573, 587, 593, 604, 608, 610, 619, 637, 639, 641, 649,
    652, 666, 667, 675, 694, 700, 701, 702, 704, 705, 709, 716, 719, 734, 738, 741, 744, 749, 760,
    766, 767, 768, 770, 772, 783, 786, 787, 788, 789, 794, 800, 802, 805, 806, 808, 811, 812, 820,
    822, 852, 854, 855, 860, 865, 876, 885, 888, 890, 899, 900, 905, 908, 918, 926, 929, 937, 943,
    944, 945, 951, 960, 973, 977, 985, 989, 990, 992, 997, 1002, 1003, 1005, 1006, 1007, 1009,
    1010, 1012, 1014, 1016, 1023, 1030, 1035, 1037, 1038, 1049, 1053, 1056, 1073, 1081, 1086,
    1088, 1090, 1096, 1098, 1101, 1107, 1108, 1116, 1118, 1121, 1123, 1136, 1141, 1148, 1150,
    1151, 1152, 1157, 1159, 1161, 1162, 1167, 1168, 1169, 1173, 1174, 1180, 1187, 1192, 1204,
    1217, 1220, 1221, 1224, 1232, 1233, 1242, 1253, 1261, 1262, 1264, 1268, 1269, 1270, 1287,
    1292, 1296, 1302, 1312, 1319, 1330, 1331, 1332, 1340, 1350, 1351, 1352, 1353, 1364, 1371,
    1372, 1375, 1395, 1404, 1405, 1406, 1415, 1424, 1429, 1435, 1440, 1442, 1450, 1455, 1466,
    1467, 1470, 1471, 1474, 1476, 1482, 1484, 1487, 1493, 1496, 1497, 1505, 1509, 1512, 1513,
    1520, 1529, 1530, 1532, 1540, 1541, 1542, 1551, 1558, 1560, 1566, 1567, 1576, 1582, 1592,
    1596, 1602, 1606, 1608, 1610, 1613, 1614, 1617, 1626, 1628, 1629, 1634, 1637, 1645, 1650,
    1655, 1660, 1664, 1666, 1668, 1673, 1674, 1680, 1688, 1691, 1696, 1703, 1704, 1706, 1716,
    1717, 1726, 1728, 1734, 1742, 1745, 1750, 1755, 1758, 1767, 1770, 1771, 1772, 1776, 1778,
    1781, 1787, 1789, 1791)


def split_indices() -> dict[str, np.ndarray]:
  """The fixed stratified split: sorted row indices into the 1,797 digits."""
  test = np.asarray(TEST_INDICES)
  return {"train": np.setdiff1d(np.arange(NUM_IMAGES), test), "test": test}


def load_arrays() -> tuple[np.ndarray, np.ndarray]:
  """-> (images (1797, 8, 8, 1) uint8 in 0..255, labels (1797,) int64): the file
  `sklearn.datasets.load_digits` reads, read without importing scikit-learn."""
  package = importlib.util.find_spec("sklearn").submodule_search_locations[0]
  table = np.loadtxt(os.path.join(package, "datasets", "data", "digits.csv.gz"),
                     delimiter=",")  # each row: 64 pixel counts 0..16, then the label
  images = np.round(table[:, :64].reshape(-1, 8, 8, 1) * (255.0 / 16.0)).astype(np.uint8)
  return images, table[:, 64].astype(np.int64)


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
    images, labels = load_arrays()
    for i in indices:
      yield int(i), {"image": images[i], "label": int(labels[i])}
