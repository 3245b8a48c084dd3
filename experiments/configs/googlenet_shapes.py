"""GoogLeNet with auxiliary heads (weight 0.3, training only) on shapes.

Command:
  python -m experiments.train --config=experiments/configs/googlenet_shapes.py --workdir=/tmp/googlenet_shapes

Trains `googlenet_aux` on embedded `shapes` classification (8 classes) at 64x64.
Measured, the default command (6 epochs, 558 steps, seed 0): 0.993 (0.994 at step 500,
0.834 at step 250) in 768 s from launch on 2 CPU cores of a slow Xeon (0.8 steps/s);
with --config.num_epochs=3: 0.954 in 254 s on a faster machine.
Presets: :test (3 steps, for the tests); :gpu, :tpu (bfloat16, bigger batch; docs/scale.md).
"""

from cnn_lab.train.configs import apply_presets
from experiments.configs.shapes_base import ONE_CPU_DEVICE, shapes_config, shapes_presets

PRESETS = shapes_presets()


def get_config(arg=None):
  return apply_presets(shapes_config(model=dict(name="googlenet_aux"), size=64,
                                    **ONE_CPU_DEVICE), arg, PRESETS)
