"""AlexNet (torchvision layout) on shapes.

Command:
  python -m experiments.train --config=experiments/configs/alexnet_shapes.py --workdir=/tmp/alexnet_shapes

Trains `alexnet` on embedded `shapes` classification (8 classes) at 64x64.
Measured with --config.num_epochs=3 (seed 0): 0.514 in 111 s on 2 CPU cores; the
recipe is not tuned for AlexNet yet. At 64x64 the fifth convolution's map is 3x3 and the
last pooling leaves 1x1, which the adaptive pool copies 36 times into fc6
(`python -m experiments.summary --model=alexnet --input_shape=64,64,3`); at 96x96 it
keeps 2x2. With learning rate 5e-4, 3 epochs (seed 0): 0.759 at 96x96
(--config.dataset.name=shapes/single_64 --config.dataset.image_size=96), as much as 6
epochs reached at 64x64 (0.764); 5e-4 was the best of the rates tried at 64x64.
Why a smaller rate helps (our reading; no ablation isolates it): each of the 256
features reaches fc6 36 times, with the same gradient each time, and Adam moves every
copy by about the learning rate, so fc6's response moves 36x as far per step as it would
from 256 inputs. 300-step runs (warm-up 50, cosine), seed 0: 1e-4 0.407, 5e-4 0.578.
12 epochs at 5e-4 on one device: 0.855, training accuracy 0.99, 634 s: it overfits, and
takes over 10 minutes. The same with random rotation (180 degrees), scale (0.15) and
shift (6 px), 10 epochs: 0.667 (test accuracy swinging 0.43-0.75 between evaluations),
498 s. Not solved yet.
Presets: :test (3 steps, for the tests); :gpu, :tpu (bfloat16, bigger batch; docs/scale.md).
"""

from cnn_lab.train.configs import apply_presets
from experiments.configs.shapes_base import ONE_CPU_DEVICE, shapes_config, shapes_presets

PRESETS = shapes_presets(test_size=64)  # AlexNet needs >= 63


def get_config(arg=None):
  return apply_presets(shapes_config(model=dict(name="alexnet"), size=64,
                                    **ONE_CPU_DEVICE), arg, PRESETS)
