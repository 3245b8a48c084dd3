"""GoogLeNet with auxiliary heads (weight 0.3, training only) on shapes.

Command:
  python -m experiments.train --config=experiments/configs/googlenet_shapes.py --workdir=/tmp/googlenet_shapes

Trains `googlenet_aux` on embedded `shapes` classification (8 classes) at 64x64 for 5
epochs (465 steps) on one CPU device. Measured, the default command over seeds 0, 1, 2
(`python -m experiments.seeds`, each run a fresh process, data dir and compilation
cache; `docs/results/googlenet_shapes_seeds.json`): 0.988, 0.989, 0.986 (mean
0.988 +- 0.002) in 382, 380, 378 s from launch on 2 cores of a faster Xeon than the runs
below; side by side the step is 1.35x faster since inception (4)'s 5x5 convolutions on
4x4 maps and (5)'s 3x3 and 5x5 on 2x2 run as one matmul (`cnn_lab/ops/conv.py`).
Before that (`docs/results/googlenet_shapes_5_epochs_seeds.json`): 0.996, 0.990, 0.989
(0.992 +- 0.003) in 548, 626, 628 s from launch on 2 cores of a slow Xeon, where 4 epochs
took as long (550, 639 s: the machine's speed drifted) for 0.984 and 0.970. Earlier, on 2
devices: 6 epochs 0.993 in 768 s; 3 epochs 0.954 in 254 s on a faster machine.
Presets: :test (3 steps, for the tests); :gpu, :tpu (bfloat16, bigger batch; docs/scale.md).
"""

from cnn_lab.train.configs import apply_presets
from experiments.configs.shapes_base import ONE_CPU_DEVICE, shapes_config, shapes_presets

PRESETS = shapes_presets()


def get_config(arg=None):
  return apply_presets(shapes_config(model=dict(name="googlenet_aux"), size=64,
                                    num_epochs=5.0, **ONE_CPU_DEVICE), arg, PRESETS)
