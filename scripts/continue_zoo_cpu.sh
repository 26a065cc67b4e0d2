#!/usr/bin/env bash
# Continue training the shipped Ballé models on a CPU, one run per core, from the weights
# in imgcomp/weights/ (warm start: fresh optimisers, a short warm-up, then a cosine fitted to the
# step budget), and export each run to runs/<name>.imgw for measurement. A candidate that beats
# the shipped file (scripts/rd_table.py --weights qK=runs/<name>.imgw) replaces it with cp.
#
#   DATA=<training images> bash scripts/continue_zoo_cpu.sh q3:0.0067:24000 q4:0.013:12000
#   bash scripts/continue_zoo_cpu.sh q3:0.0067:16000:bmshj2018-factorized
#
# Each argument is QUALITY:LAMBDA:STEPS[:ARCH] (ARCH: mbt2018-mean, the default, or another
# shipped architecture, e.g. bmshj2018-factorized; the run is runs/<arch>-<quality>-cpu). Runs
# resume in runs/<name>/ when started again with the same arguments (stop with Ctrl-C: a
# checkpoint is written). Environment (defaults):
#   DATA=../shared/data/train RUNS=runs PATCH_SIZE=128 BATCH_SIZE=8 LR=1e-4 WARMUP=500
#   JOBS=<number of cores>   (runs at once, one thread each)   FIT_QUANTILES=20000
# Measured on a 2-core AMD EPYC (AVX512-BF16, no AMX): 128x128 crops, batch 8, bf16 autocast,
# torch.compile, one thread: 7.5 steps/s (60 crops/s) alone, 5.7 steps/s each with two runs.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
DATA=${DATA:-../shared/data/train}
RUNS=${RUNS:-runs}
PATCH_SIZE=${PATCH_SIZE:-128}
BATCH_SIZE=${BATCH_SIZE:-8}
LR=${LR:-1e-4}
WARMUP=${WARMUP:-500}
JOBS=${JOBS:-$(nproc)}
FIT_QUANTILES=${FIT_QUANTILES:-20000}
IMGCOMP=${IMGCOMP:-imgcomp}
PYTHON=${PYTHON:-python}
mkdir -p "$RUNS"

one() {
    local quality lmbda steps arch name weights
    IFS=: read -r quality lmbda steps arch <<<"$1"
    arch=${arch:-mbt2018-mean}
    # the registry's own file for the architecture's shipped weights (its alias resolved)
    weights=$("$PYTHON" - "$arch" "${quality#q}" <<'EOF'
import sys
from imgcomp.errors import ImgcompError
from imgcomp.families.weights import shipped_weights_path
from imgcomp.registry import canonical_name
try:
    print(shipped_weights_path(canonical_name(sys.argv[1]), int(sys.argv[2])))
except ImgcompError as exc:
    sys.exit(str(exc))
EOF
    ) || return 2
    name="${arch}-${quality}-cpu"
    "$IMGCOMP" train --arch "$arch" --N 64 --M 96 --lmbda "$lmbda" --steps "$steps" \
        --batch-size "$BATCH_SIZE" --patch-size "$PATCH_SIZE" --lr "$LR" \
        --lr-schedule cosine --warmup-steps "$WARMUP" --amp --compile --num-threads 1 \
        --warm-start "$weights" \
        --data "$DATA" --out "$RUNS/$name" --log-every 250 --quiet >>"$RUNS/$name.out" 2>&1
    "$IMGCOMP" export "$RUNS/$name" "$RUNS/$name.imgw" --half --fit-quantiles "$FIT_QUANTILES"
}

running=0
for spec in "$@"; do
    one "$spec" &
    running=$((running + 1))
    if [ "$running" -ge "$JOBS" ]; then
        wait -n
        running=$((running - 1))
    fi
done
wait
