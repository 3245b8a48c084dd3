#!/usr/bin/env bash
# The accelerator check: run once on a GPU machine, from the repository root.
#
#   OUT=DIR bash benchmarks/device_check.sh
#
# Installs the project (with the `bench` extra; on a machine without a package index,
# wheels placed in .whl/ are installed instead, next to the machine's own jax), then
# runs, each step bounded in time so one failure does not cost the others:
#   1. the machine and library versions;
#   2. `experiments.benchmark train peers` (training step images/s, MFU; Keras 3 and
#      Flax Linen beside ours) -> $OUT/bench.json;
#   3. the `:gpu` presets of lenet5_digits.py and resnet_shapes.py trained from a fresh
#      process, wall time from launch (data preparation and compilation included);
#   4. the accelerator-preset tests;
#   5. `experiments.benchmark time_to_accuracy` (Flax's and Keras's MNIST examples and
#      lenet5_mnist.py:gpu, seeds 0, 1, 2, to 99.0% test accuracy) -> $OUT/tta.json.
# Everything it prints goes to $OUT/device_check.log too. At most 8 minutes on one GPU
# (the step limits add up to 450 s after the install); not yet run on one.
set -uo pipefail
OUT=${OUT:-benchmarks/results/device}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 CNN_LAB_DATA_DIR=${CNN_LAB_DATA_DIR:-/tmp/cnn_lab_data}
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=$PWD:/tmp/site
else
  python3 -m pip install -q -e '.[bench,test]' || exit 1
fi

step() {  # step SECONDS NAME COMMAND...: one bounded, timed step
  local limit=$1 name=$2; shift 2
  echo; echo "== $name"
  local start=$EPOCHREALTIME
  timeout "$limit" "$@"; local rc=$?
  awk -v n="$name" -v rc="$rc" -v a="$start" -v b="$EPOCHREALTIME" \
      'BEGIN { printf "== %s: exit %d, %.1f s wall\n", n, rc, b - a }'
}

{
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm --format=csv
  KERAS_BACKEND=jax python3 -c "import jax, flax, optax, orbax.checkpoint, grain, keras, sys; \
print('python', sys.version.split()[0], 'jax', jax.__version__, 'flax', flax.__version__, \
'optax', optax.__version__, 'keras', keras.__version__, jax.devices())"
  step 150 "benchmark train peers" python3 -m experiments.benchmark train peers \
      --out="$OUT/bench.json"
  for cfg in lenet5_digits.py:gpu resnet_shapes.py:gpu; do
    step 45 "train $cfg" python3 -m experiments.train --config="experiments/configs/$cfg" \
        --workdir="/tmp/runs/${cfg/:/_}"
    tail -n 1 "/tmp/runs/${cfg/:/_}/metrics.jsonl"
  done
  step 60 "accelerator tests" python3 -m pytest -q -p no:cacheprovider \
      tests/test_scale.py -k accelerator
  step 150 "benchmark time_to_accuracy" python3 -m experiments.benchmark time_to_accuracy \
      --out="$OUT/tta.json"
} 2>&1 | tee "$OUT/device_check.log"
