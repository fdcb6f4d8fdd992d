#!/usr/bin/env bash
# Every CUDA check of vmfmir in one go (under 5 minutes on one GPU):
#   1. the CUDA-marked tests            (pytest -m gpu)              -> $OUT/pytest_gpu.{log,xml}
#   2. the training-step benchmark      (benchmarks/train.py)        -> $OUT/train_cuda.{json,log}
#   3. the engine benchmark on CUDA     (benchmarks/engine.py)       -> $OUT/engine_cuda.{json,log}
#
#   benchmarks/gpu_check.sh                 # run on a machine with a CUDA device
#   benchmarks/gpu_check.sh --dry-run       # no GPU needed: check the entry points, print the plan
#   PYTHON=.venv/bin/python OUT=/tmp/gpu benchmarks/gpu_check.sh
#
# Exit status: 0 when every step passed; otherwise the number of failed steps (each step still runs).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PYTHON=${PYTHON:-python}
OUT=${OUT:-benchmarks/results/gpu}
DEVICE=${DEVICE:-cuda}
DRY_RUN=0
for arg in "$@"; do
    case "$arg" in
        --dry-run) DRY_RUN=1 ;;
        -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
        *) echo "gpu_check.sh: unknown argument $arg (use --dry-run or --help)" >&2; exit 2 ;;
    esac
done

# name | seconds allowed | command
STEPS=(
    "pytest_gpu|120|$PYTHON -m pytest -m gpu -q -p no:cacheprovider --junitxml $OUT/pytest_gpu.xml tests"
    "train_cuda|80|$PYTHON benchmarks/train.py --device $DEVICE --batch 64 --rounds 7 --out $OUT/train_cuda.json"
    "engine_cuda|80|$PYTHON benchmarks/engine.py --device $DEVICE --out $OUT/engine_cuda.json"
)

if [[ $DRY_RUN == 1 ]]; then
    status=0
    for script in benchmarks/train.py benchmarks/engine.py; do
        help_text=$("$PYTHON" "$script" --help 2>&1)  # (not piped into grep -q: SIGPIPE + pipefail)
        if grep -q -- "--device" <<<"$help_text"; then
            echo "ok: $script accepts --device"
        else
            echo "FAIL: $script has no --device option" >&2; status=1
        fi
    done
    markers=$("$PYTHON" -m pytest --markers -p no:cacheprovider 2>&1)
    if grep -q "@pytest.mark.gpu" <<<"$markers"; then
        echo "ok: the gpu marker is registered"
    else
        echo "FAIL: pytest does not know the gpu marker" >&2; status=1
    fi
    echo "plan (results under $OUT/):"
    for step in "${STEPS[@]}"; do
        IFS='|' read -r name limit cmd <<<"$step"
        echo "  [$name, <= ${limit}s] $cmd"
    done
    exit $status
fi

if ! "$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "gpu_check.sh: no CUDA device visible to $PYTHON (torch.cuda.is_available() is False)" >&2
    exit 2
fi
mkdir -p "$OUT"
"$PYTHON" -c "import torch; print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name(0))" | tee "$OUT/device.txt"

failed=0
start_all=$SECONDS
for step in "${STEPS[@]}"; do
    IFS='|' read -r name limit cmd <<<"$step"
    echo "== $name (<= ${limit}s): $cmd"
    start=$SECONDS
    timeout "$limit" $cmd >"$OUT/$name.log" 2>&1
    rc=$?
    tail -n 15 "$OUT/$name.log"
    echo "== $name: exit $rc after $((SECONDS - start))s"
    echo "$name $rc $((SECONDS - start))" >>"$OUT/summary.txt"
    [[ $rc == 0 ]] || failed=$((failed + 1))
done
echo "all steps: $((SECONDS - start_all))s, $failed failed; results in $OUT/"
exit $failed
