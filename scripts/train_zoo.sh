#!/usr/bin/env bash
# Train the model zoo in parallel on one GPU, then export each run to imgcomp/weights/.
#
#   mean-scale hyperprior (mbt2018-mean) at lmbda 0.0035, 0.0067, 0.013, 0.025
#   factorized prior (bmshj2018-factorized) at lmbda 0.0067
#
# Each run trains in runs/<name>/ (checkpoint.pt, log.jsonl, train.out) and resumes there when
# started again; weights go to imgcomp/weights/<name>.imgw (packed safetensors). Run from anywhere with the
# project's Python environment active. Environment (defaults):
#   N=128 M=192 STEPS=20000 DEVICE=cuda AMP=1 BATCH_SIZE=16 PATCH_SIZE=256 SEED=0 LR=1e-4
#   DATA=../shared/data/train RUNS=runs WEIGHTS=imgcomp/weights PYTHON=python
#   TIME_BUDGET=<seconds for the whole script>: training stops in time, with a checkpoint,
#   to leave room for the export (a rerun with the same settings carries on).
#   ONLY="name1 name2": train only these runs.   STATUS_EVERY=60: seconds between progress lines.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
start=$(date +%s)

N=${N:-128}
M=${M:-192}
STEPS=${STEPS:-20000}
DEVICE=${DEVICE:-cuda}
AMP=${AMP:-1}
BATCH_SIZE=${BATCH_SIZE:-16}
PATCH_SIZE=${PATCH_SIZE:-256}
SEED=${SEED:-0}
LR=${LR:-1e-4}
DATA=${DATA:-../shared/data/train}
RUNS=${RUNS:-runs}
WEIGHTS=${WEIGHTS:-imgcomp/weights}
STATUS_EVERY=${STATUS_EVERY:-60}
TIME_BUDGET=${TIME_BUDGET:-}
if [[ -z "${PYTHON:-}" ]]; then
    PYTHON=python
    command -v python >/dev/null 2>&1 || PYTHON=python3
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1

ZOO=(
    "mbt2018-mean 0.0035"
    "mbt2018-mean 0.0067"
    "mbt2018-mean 0.013"
    "mbt2018-mean 0.025"
    "bmshj2018-factorized 0.0067"
)

names=()
archs=()
lmbdas=()
for entry in "${ZOO[@]}"; do
    read -r arch lmbda <<<"$entry"
    name="${arch}-lmbda${lmbda}"
    if [[ -n "${ONLY:-}" && " $ONLY " != *" $name "* ]]; then
        continue
    fi
    names+=("$name")
    archs+=("$arch")
    lmbdas+=("$lmbda")
done
count=${#names[@]}
if ((count == 0)); then
    echo "train_zoo: nothing to train (ONLY=${ONLY:-})" >&2
    exit 2
fi

cpus=$(nproc 2>/dev/null || echo 2)
threads=$((cpus / count))
((threads >= 1)) || threads=1

max_seconds_args=()
if [[ -n "$TIME_BUDGET" ]]; then
    # leave time for starting Python/CUDA (~10 s) and for the export at the end (~10 s)
    reserve=$((30 + TIME_BUDGET / 20))
    ((reserve <= 150)) || reserve=150
    train_budget=$((TIME_BUDGET - reserve - ($(date +%s) - start)))
    if ((train_budget < 1)); then
        echo "train_zoo: TIME_BUDGET=$TIME_BUDGET leaves no time to train" >&2
        exit 2
    fi
    max_seconds_args=(--max-seconds "$train_budget")
fi
amp_args=()
[[ "$AMP" == "1" ]] && amp_args=(--amp)

echo "train_zoo: $count runs on $DEVICE: N=$N M=$M steps=$STEPS batch=$BATCH_SIZE" \
    "patch=$PATCH_SIZE amp=$AMP threads/run=$threads budget=${TIME_BUDGET:-none} s"

pids=()
for i in "${!names[@]}"; do
    name=${names[$i]}
    mkdir -p "$RUNS/$name"
    "$PYTHON" -m imgcomp.cli train --arch "${archs[$i]}" --N "$N" --M "$M" \
        --lmbda "${lmbdas[$i]}" --steps "$STEPS" --data "$DATA" --out "$RUNS/$name" \
        --device "$DEVICE" --batch-size "$BATCH_SIZE" --patch-size "$PATCH_SIZE" --seed "$SEED" --lr "$LR" \
        --num-threads "$threads" --log-every 100 --checkpoint-every 1000 --quiet \
        "${amp_args[@]}" "${max_seconds_args[@]}" >>"$RUNS/$name/train.out" 2>&1 &
    pids+=($!)
    echo "  started $name (pid $!, log $RUNS/$name/train.out)"
done

stop_children() {
    echo "train_zoo: stopping; each run checkpoints first" >&2
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
}
trap stop_children INT TERM

summary() {
    # name, reached step, last bpp / PSNR, mean images/s over the last 5 log lines
    "$PYTHON" - "$RUNS" "$STEPS" "${names[@]}" <<'PY'
import json, sys
from pathlib import Path

runs, steps, names = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
total = 0.0
for name in names:
    log = runs / name / "log.jsonl"
    lines = [json.loads(x) for x in log.read_text().splitlines()] if log.exists() else []
    if not lines:
        print(f"  {name:34s} no log yet")
        continue
    last = lines[-1]
    ips = sum(r["images_per_s"] for r in lines[-5:]) / len(lines[-5:])
    total += ips
    print(
        f"  {name:34s} step {last['step']:>7}/{steps}  bpp {last['bpp']:.3f}  "
        f"psnr {last['psnr']:.2f}  {ips:8.1f} img/s  {last['elapsed']:8.0f} s"
    )
print(f"  all runs together: {total:.1f} images/s")
PY
}

running() {
    local pid
    for pid in "${pids[@]}"; do
        kill -0 "$pid" 2>/dev/null && return 0
    done
    return 1
}

last_status=$(date +%s)
while running; do
    sleep 5
    if (($(date +%s) - last_status >= STATUS_EVERY)); then
        last_status=$(date +%s)
        echo "train_zoo: $(($(date +%s) - start)) s"
        summary
    fi
done

failed=0
for i in "${!names[@]}"; do
    rc=0
    wait "${pids[$i]}" || rc=$?
    if ((rc != 0)); then
        echo "train_zoo: ${names[$i]} exited with $rc; see $RUNS/${names[$i]}/train.out" >&2
        tail -n 5 "$RUNS/${names[$i]}/train.out" >&2 || true
        failed=1
    fi
done
trap - INT TERM

echo "train_zoo: training done after $(($(date +%s) - start)) s"
summary

# one Python process for all exports (each start costs seconds of the budget)
"$PYTHON" - "$RUNS" "$WEIGHTS" "${names[@]}" <<'PY' || failed=1
import sys
from pathlib import Path

from imgcomp.errors import ImgcompError
from imgcomp.train import export_weights

runs, weights, names = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3:]
failed = 0
for name in names:
    try:
        path = export_weights(runs / name, weights / f"{name}.imgw")
    except ImgcompError as exc:
        print(f"train_zoo: cannot export {name}: {exc}", file=sys.stderr)
        failed = 1
    else:
        print(f"  exported {path} ({path.stat().st_size} bytes)")
sys.exit(failed)
PY
echo "train_zoo: finished after $(($(date +%s) - start)) s"
exit "$failed"
