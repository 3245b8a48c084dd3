"""VGG-11 with BatchNorm and the CIFAR-style head (global pool + FC) on shapes.

VGG-16: --config.model.name=vgg16_bn; torchvision's 4096-wide head: --config.model.head=imagenet.

Command:
  python -m experiments.train --config=experiments/configs/vgg_shapes.py --workdir=/tmp/vgg_shapes

Trains `vgg11_bn` on embedded `shapes` classification (8 classes) at 32x32, the shapes
recipe (AdamW, warm-up + cosine) at learning rate 1e-3 for 10 epochs (930 steps of 64),
one CPU device. Measured (`experiments.seeds`, seeds 0, 1, 2, 2 CPU cores, from launch):
0.978, 0.975, 0.984 (0.979 +- 0.005) in 359, 347, 343 s
(`docs/results/vgg_shapes_seeds.json`); 6 epochs (seed 0): 0.966 in 218 s, training
accuracy 0.98 and still rising, hence 10.
What made it trainable here: its last two convolutions (3x3 on 2x2 maps at 32x32
input) hit a slow path of XLA:CPU, 2.4 s of a 2.55 s step; they now run as one matmul
(`cnn_lab/ops/conv.py`), 0.30 s a step. Earlier, 3 epochs took 1001 s (0.914).
Presets: :test (3 steps, for the tests); :gpu, :tpu (bfloat16, bigger batch; docs/scale.md).
"""

from cnn_lab.train.configs import apply_presets
from experiments.configs.shapes_base import ONE_CPU_DEVICE, shapes_config, shapes_presets

PRESETS = shapes_presets()


def get_config(arg=None):
  c = shapes_config(model=dict(name="vgg11_bn", head="cifar"), size=32,
                    optimizer=dict(learning_rate=1e-3), num_epochs=10.0, **ONE_CPU_DEVICE)
  return apply_presets(c, arg, PRESETS)
