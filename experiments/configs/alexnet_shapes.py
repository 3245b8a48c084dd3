"""AlexNet (torchvision layout) on shapes.

Command:
  python -m experiments.train --config=experiments/configs/alexnet_shapes.py --workdir=/tmp/alexnet_shapes

Trains `alexnet` on embedded `shapes` classification (8 classes): the 64x64 images
resized to 128x128, AdamW at 5e-4 (the shapes recipe's warm-up + cosine), 7 epochs (651
steps of 64), one CPU device.
Measured (2 CPU cores, an AVX-512 Xeon, `experiments.seeds`, from launch with a fresh
data dir and compilation cache): 0.978 +- 0.003 (seeds 0, 1, 2: 0.975, 0.977, 0.981;
541-561 s a run; training accuracy 0.98-1.00 on the last step)
(docs/results/alexnet_shapes_seeds.json).

Why 128x128 (found last): at 96x96, 8 epochs, seed 0's 50 test errors (below) were
mostly hexagons, pentagons and circles confused; at 128x128 the same 8 epochs reached
0.974 (0.844 at step 250 against 0.646 at 96x96; training accuracy 0.994) but in 640 s,
so the default trains 7. On the slower Xeon of earlier sessions (5 epochs at 128x128 in
528 s) 7 epochs would take about 740 s: the 10 minutes hold only on a machine like this
one. The 96x96 default it replaces: 0.947 +- 0.004 (seeds 0, 1, 2:
0.950, 0.948, 0.943; 447-511 s; docs/results/alexnet_shapes_seeds_1_2.json).

Why not 64x64: AlexNet was drawn for 224x224 (a 55x55 map after its 11x11 stride-4 first
convolution, 6x6 before fc6). At 64x64 the first map is 15x15 and the last pooling
leaves 1x1, which the adaptive pool copies 36 times into fc6
(`python -m experiments.summary --model=alexnet --input_shape=64,64,3`); there it
memorised: 12 epochs at 5e-4, 0.855 test with training accuracy 0.99, 634 s. At 96x96
(last map 2x2) and 128x128 (3x3) the gap narrows and each epoch teaches more: 96x96,
8 epochs: 0.950 (training 0.98), 511 s; 128x128, 5 epochs (what 10 minutes allowed on
that slower Xeon): 0.938 at 5e-4 (training 0.96, 528 s) and 0.935 at 1e-3 (481 s); seed
0, one run each.
The learning rate: 5e-4 was the best of the rates tried at 64x64 (300-step runs, warm-up
50, cosine, seed 0: 1e-4 0.407, 5e-4 0.578; 3 epochs at 5e-4: 0.759 at 96x96, as much as 6
reached at 64x64 (0.764); 3 epochs at 64x64 with the shapes recipe's 2e-3: 0.514). Our
reading of why a smaller rate helps (no ablation isolates it): each of the 256 features
reaches fc6 once for every copy the adaptive pool makes, with the same gradient each time,
and Adam moves every copy by about the learning rate, so fc6's response moves that many
times as far per step. Tried at 96x96 and not kept: random left-right and up-down flips
(`augment.hflip`, `augment.vflip`; exact for these classes), 8 epochs: 0.943 with training
accuracy 0.945, 491 s (seed 0): less memorising, not more learnt in the time; random
shifts of up to 8 pixels (`augment.max_shift=8`), 8 epochs: 0.937 (training accuracy 0.937
at step 700), the same; 10 epochs (930 steps): 0.955 with training accuracy 0.994, 562 s
on a faster, AVX-512 Xeon: more steps memorise more. Kaiming-normal kernels (gain 2) or
PyTorch's default U(+-1 / sqrt(fan_in)) instead of flax's lecun normal, test accuracy at
step 250 (seed 0, one run each): 0.571 and 0.535 against 0.646; He's training loss
averaged 3.5 over the first 50 steps (chance: 2.08). Tried at 64x64 and not kept: random
rotation (180 degrees), scale (0.15) and shift (6 px), 10 epochs: 0.667 (test accuracy
swinging 0.43-0.75 between evaluations), 498 s.
Regularising and optimiser changes at 96x96, 8 epochs, seed 0, one run each (accuracy
only: two runs shared the cores): label smoothing 0.1 (`loss.label_smoothing`) 0.946;
AdamW weight decay 0.05 instead of 1e-4 0.932; batch 32 (1,496 steps) 0.949 with training
accuracy 0.987; SGD with momentum 0.9 at 0.01 and L2 5e-4 (the 2012 paper's) 0.41 at
step 500, stopped. None moves the test accuracy above 0.95. Where a step goes (one
device, batch 64, 96x96): the whole step with SGD 0.44 s, of which fc6's forward and
backward (64 x 9,216 x 4,096) 0.10 s; AdamW's update of fc6-fc8's 54 million
parameters alone takes 0.18 s (memory-bound), so a step of the recipe is ~0.6 s and 10
minutes hold about 10 epochs.
What it gets wrong (seed 0's default run, `python -m experiments.evaluate
--workdirs=DIR --crops=1`): 50 of the 1,000 test images, 32 of them among the round
shapes: hexagon and pentagon confused 22 times, circle and hexagon 10. Our reading (not
isolated by an ablation): only their corners tell them apart, a detail that the first
layer's 11x11 filters at stride 4 blur at this size; the other families' first layers have
stride 1 or 2.
Presets: :test (3 steps, for the tests); :gpu, :tpu (bfloat16, bigger batch; docs/scale.md).
"""

from cnn_lab.train.configs import apply_presets
from experiments.configs.shapes_base import ONE_CPU_DEVICE, shapes_config, shapes_presets

PRESETS = shapes_presets(test_size=64)  # AlexNet needs >= 63


def get_config(arg=None):
  # `shapes/single_64` resized to 128 (`shapes/single_128` is another, smaller split)
  c = shapes_config(model=dict(name="alexnet"), size=128, num_epochs=7.0,
                    dataset=dict(name="shapes/single_64"),
                    optimizer=dict(learning_rate=5e-4), **ONE_CPU_DEVICE)
  return apply_presets(c, arg, PRESETS)
