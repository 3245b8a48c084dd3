"""VGG-11 with BatchNorm and the CIFAR-style head (global pool + FC) on shapes.

VGG-16: --config.model.name=vgg16_bn; torchvision's 4096-wide head: --config.model.head=imagenet.

Command:
  python -m experiments.train --config=experiments/configs/vgg_shapes.py --workdir=/tmp/vgg_shapes

Trains `vgg11_bn` on embedded `shapes` classification (8 classes) at 32x32.
Measured with --config.num_epochs=3 (seed 0): 0.914 (1001 s, sharing the 2 cores
with a test run); the 6-epoch default is not measured yet.
Presets: :test (3 steps, for the tests); :gpu, :tpu (bfloat16, bigger batch; docs/scale.md).
"""

from cnn_lab.train.configs import apply_presets
from experiments.configs.shapes_base import ONE_CPU_DEVICE, shapes_config, shapes_presets

PRESETS = shapes_presets()


def get_config(arg=None):
  c = shapes_config(model=dict(name="vgg11_bn", head="cifar"), size=32,
                    optimizer=dict(learning_rate=1e-3), **ONE_CPU_DEVICE)
  return apply_presets(c, arg, PRESETS)
