#!/usr/bin/env bash
# The GPU check of issue 13, in one command, on a machine with an NVIDIA GPU (< 8 minutes on an H200):
#
#   benchmarks/gpu_check.sh RESULTS_DIR            # the real run
#   benchmarks/gpu_check.sh --dry-run RESULTS_DIR  # every step on tiny cases under Numba's CUDA simulator
#
# Steps (each under a time limit, all within GPU_CHECK_BUDGET seconds, default 450, so the script
# always ends in time and always writes its summary):
#   0. install: if cnnlang is not installed, the project (editable, --no-deps, no index) and, where
#      missing, lark, graphviz and platformdirs from wheels in .whl/ (the device machine's recipe)
#   1. tests/runtime/cuda with CNNLANG_CUDA_REAL=1 (the simulator's tests on the real GPU)
#   2. every zoo model's forward on cuda vs the CPU (benchmarks/gpu_check.py zoo)
#   3. LeNet-5 on MNIST, the same epochs on the CPU and on cuda (run side by side): test accuracy
#      within 0.3 points. MNIST from $CNNLANG_DATA, ../shared/data or shared/data
#   4. benchmarks/bench_gpu.py: cnnlang cuda vs PyTorch (TF32 off and default) and vs cnnlang CPU
# RESULTS_DIR gets each step's log and JSON, and summary.txt (also printed at the end).
set -u -o pipefail

DRY=0
if [ "${1:-}" = "--dry-run" ]; then DRY=1; shift; fi
if [ $# -ne 1 ]; then echo "usage: $0 [--dry-run] RESULTS_DIR" >&2; exit 2; fi
mkdir -p "$1" || exit 2
RESULTS=$(cd "$1" && pwd)
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT" || exit 2
PY=${PYTHON:-python3}
SUMMARY="$RESULTS/summary.txt"
: >"$SUMMARY"
START=$SECONDS
BUDGET=${GPU_CHECK_BUDGET:-450}  # seconds for all steps: the whole script must end within 8 minutes
export PYTHONUNBUFFERED=1

note() { echo "$*" | tee -a "$SUMMARY"; }

# step NAME LIMIT_SECONDS COMMAND...: run with a limit (cut to what is left of BUDGET), log to
# RESULTS/NAME.log, and record the outcome: the command's own PASS/FAIL line, else its exit status
# and last line (pytest's counts).
step() {
    local name=$1 limit=$2; shift 2
    local started=$SECONDS left=$((BUDGET - (SECONDS - START)))
    [ "$limit" -gt "$left" ] && limit=$left
    if [ "$limit" -lt 10 ]; then note "FAIL $name: not run, the ${BUDGET}s budget is spent"; return; fi
    echo "== $name (limit ${limit}s)"
    timeout --kill-after=10 "$limit" "$@" 2>&1 | tee "$RESULTS/$name.log"
    local status=$?
    local verdict
    verdict=$(grep -E '^(PASS|FAIL) ' "$RESULTS/$name.log" | tail -1)
    if [ $status -eq 124 ] || [ $status -eq 137 ]; then verdict="FAIL $name: stopped at its ${limit}s limit"
    elif [ -z "$verdict" ]; then
        verdict="$([ $status -eq 0 ] && echo PASS || echo FAIL) $name (exit $status): $(grep -v '^\s*$' "$RESULTS/$name.log" | tail -1)"
    fi
    note "$verdict  [$name, $((SECONDS - started)) s]"
}

# -- 0. install. Run from the repository root, `import cnnlang` finds the source folder even when
# nothing is installed, so ask for cnnlang.runtime (mapped from runtime/ by an install). An
# editable install into $PY's environment: a --target copy would be shadowed by the source folder.
if ! "$PY" -c "import cnnlang.runtime, cnnlang.cache, cnnlang.parser" 2>/dev/null; then
    wheels=()
    for module in lark graphviz platformdirs; do
        if ! "$PY" -c "import $module" 2>/dev/null; then
            found=$(ls .whl/"$module"-*.whl 2>/dev/null | head -1)
            [ -n "$found" ] || { note "FAIL install: $module is missing and there is no .whl/$module-*.whl to install"; exit 1; }
            wheels+=("$found")
        fi
    done
    "$PY" -m pip install -q --no-index --no-deps --no-build-isolation -e . "${wheels[@]}" >"$RESULTS/install.log" 2>&1 \
        || { note "FAIL install (see $RESULTS/install.log)"; exit 1; }
    note "installed cnnlang (editable, --no-deps)${wheels[*]:+ and ${wheels[*]}}"
fi
"$PY" - <<'EOF' 2>&1 | tee "$RESULTS/environment.txt"
import platform, numpy, numba
import cnnlang
print("python", platform.python_version(), "| numpy", numpy.__version__, "| numba", numba.__version__, "| cnnlang", cnnlang.__file__)
try:
    from importlib.metadata import version
    print("numba-cuda", version("numba-cuda"))
    import cupy; print("cupy", cupy.__version__)
except Exception as error:
    print("(", error, ")")
try:
    import torch; print("torch", torch.__version__, "| cuda", torch.cuda.is_available() and torch.cuda.get_device_name(0))
except Exception as error:
    print("torch: not importable:", error)
EOF
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv >>"$RESULTS/environment.txt" 2>&1

if [ $DRY -eq 1 ]; then
    export NUMBA_ENABLE_CUDASIM=1
    note "DRY RUN under Numba's CUDA simulator: tiny cases; the numbers say nothing about speed"
    TINY=$RESULTS/tiny
    "$PY" benchmarks/gpu_check.py tiny-data "$TINY" || exit 1
    step cuda-tests 300 "$PY" -m pytest tests/runtime/cuda/test_cuda_loss.py tests/runtime/cuda/test_cuda_optim.py -q -p no:cacheprovider
    step zoo 300 "$PY" benchmarks/gpu_check.py zoo "$RESULTS/zoo.json" --tiny
    TRAIN=("$TINY/micro.cnn" --data "$TINY" --epochs 1 --batch 4 --val-split 0 --no-download --force)
    step train-cpu 300 "$PY" -m cnnlang train "${TRAIN[@]}" --out "$RESULTS/train-cpu" --device cpu
    step train-cuda 300 "$PY" -m cnnlang train "${TRAIN[@]}" --out "$RESULTS/train-cuda" --device cuda
    step training 60 "$PY" benchmarks/gpu_check.py training "$RESULTS/training.json" "$RESULTS/train-cpu" "$RESULTS/train-cuda"
    step bench 300 "$PY" benchmarks/bench_gpu.py --tiny --json "$RESULTS/bench.json"
else
    export CNNLANG_CUDA_REAL=1
    unset NUMBA_ENABLE_CUDASIM
    # xdist (installed there) compiles the kernels of several test files at once
    parallel=()
    "$PY" -c "import xdist" 2>/dev/null && parallel=(-n 8)
    step cuda-tests 120 "$PY" -m pytest tests/runtime/cuda -q -p no:cacheprovider "${parallel[@]}" --junitxml="$RESULTS/cuda-tests.xml"
    # (on an H200 machine the first 13 models took 90 s, the 5 VGGs and ZF-Net 81 s more: the CPU
    # side of each model's two forwards, compiles included; the bench step takes what is left)
    step zoo 210 "$PY" benchmarks/gpu_check.py zoo "$RESULTS/zoo.json"
    DATA=""
    for candidate in "${CNNLANG_DATA:-}" ../shared/data shared/data; do
        if [ -n "$candidate" ] && ls "$candidate"/mnist/train-images-idx3-ubyte* >/dev/null 2>&1; then DATA=$candidate; break; fi
    done
    if [ -z "$DATA" ]; then
        note "FAIL training: no MNIST (looked in \$CNNLANG_DATA, ../shared/data and shared/data for mnist/train-images-idx3-ubyte*)"
    else
        TRAIN=(lenet5 --data mnist --data-dir "$DATA" --no-download --epochs 2 --val-split 0 --force)
        # side by side: the CPU run uses the cores, the cuda run one core and the GPU
        step train-cpu 110 "$PY" -m cnnlang train "${TRAIN[@]}" --out "$RESULTS/train-cpu" --device cpu >/dev/null &
        step train-cuda 110 "$PY" -m cnnlang train "${TRAIN[@]}" --out "$RESULTS/train-cuda" --device cuda
        wait
        step training 20 "$PY" benchmarks/gpu_check.py training "$RESULTS/training.json" "$RESULTS/train-cpu" "$RESULTS/train-cuda"
    fi
    # bench_gpu stops itself within its budget and still reports what ran (the numba GEMM's second
    # pass, last, is what a short budget cuts)
    left=$((BUDGET - (SECONDS - START) - 15))
    [ $left -gt 185 ] && left=185
    step bench 200 "$PY" benchmarks/bench_gpu.py --gemm auto,numba --budget $left --json "$RESULTS/bench.json"
fi
grep -E ' img/s \|' "$RESULTS/bench.log" 2>/dev/null | sort -u >>"$SUMMARY"

note "done in $((SECONDS - START)) s; results in $RESULTS"
echo
echo "== summary"
cat "$SUMMARY"
grep -q '^FAIL' "$SUMMARY" && exit 1
exit 0
