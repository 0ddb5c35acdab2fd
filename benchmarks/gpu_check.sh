#!/usr/bin/env bash
# The GPU checks of PairRM and GenFuser, sized for one lent H200 session (15 device-minutes in
# all, start-up included): CUDA correctness tests, then both benchmarks, in under 8 minutes.
#
#   bash benchmarks/gpu_check.sh prepare   # here, on the CPU host: wheels into .whl/, data into .gpu/
#   bash benchmarks/gpu_check.sh run       # there: the device tool's run, carrying .whl and .gpu
#   bash benchmarks/gpu_check.sh dry       # here: every step, tiny and on the CPU, to catch mistakes
#
# The device call (one, with time left for a rerun; then give_back):
#   run(command="bash benchmarks/gpu_check.sh run", carry=[".whl", ".gpu"], timeout_s=540)
#
# The GPU host has python3 with torch 2.11, transformers 5.17, pytest and pytest-timeout, and
# no internet; what blendgate's PairRM/GenFuser modules need beyond that (pydantic) and the
# optional attention kernels (flashdeberta, disentangled-flash) travel as wheels. Each step has
# its own time limit, writes JSON as it goes, and a failing step does not stop the next one.
# Results land in $OUT (at most 8 files come back): gpu_check.log, pytest-gpu.xml,
# pairrm-bfloat16.json, pairrm-float16.json, pairrm-bfloat16-compile.json, genfuser-beam4.json,
# genfuser-greedy.json, profiles.tgz. The step limits add up to 480 s.
set -uo pipefail

cd "$(dirname "$0")/.."
MODE=${1:-run}
PYTHON=${PYTHON:-python3}
WHEELS=(pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5
        typing-extensions==4.16.0 flashdeberta==0.0.8 disentangled-flash==1.1.1)
DATA=.gpu/data

prepare() {
    grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
    grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >> .git/info/exclude
    rm -rf .whl && mkdir -p .whl "$DATA"
    "$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 -d .whl "${WHEELS[@]}" || exit 1
    rm -rf "$DATA/alpaca_eval" && mkdir -p "$DATA/alpaca_eval"
    cp -r ../shared/data/alpaca_eval/results "$DATA/alpaca_eval/" || exit 1
    du -sh .whl .gpu
}

step() {  # step NAME SECONDS COMMAND...: run with a limit, log its status, go on regardless
    local name=$1 limit=$(($2 * ${LIMIT_SCALE:-1}))
    shift 2
    echo "=== $name (limit ${limit}s) $(date -u +%T)"
    local start=$SECONDS
    timeout --kill-after=10 "$limit" "$@"
    echo "=== $name: exit $? after $((SECONDS - start))s"
}

checks() {  # checks DEVICE SIZE-FLAGS...: every step; "cpu" shrinks the benchmarks to a dry run
    local device=$1
    export BLENDGATE_EVAL_DATA=$DATA PYTHONUNBUFFERED=1
    local pairrm=(--prompts 8 --n 2 5 8)
    local genfuser=(--concurrency 1 8 32 --new-tokens 128)
    if [ "$device" = cpu ]; then
        export BLENDGATE_GPU_TEST_DEVICE=cpu LIMIT_SCALE=8  # the real-length tests, on 2 cores
        pairrm=(--small --device cpu --prompts 2 --n 2 3 --source-max-length 128
                --candidate-max-length 64 --threads 2)
        genfuser=(--small --device cpu --concurrency 1 2 --new-tokens 8 --threads 2)
    fi
    "$PYTHON" - <<'EOF'
import sys, torch, transformers
print("python", sys.version.split()[0], "torch", torch.__version__, "transformers",
      transformers.__version__, "cuda", torch.cuda.is_available(),
      torch.cuda.get_device_name() if torch.cuda.is_available() else "")
EOF
    command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
    # Most important first; the riskiest (a 24-layer torch.compile) last, in a step of its own.
    local results=$DATA/alpaca_eval/results
    step "CUDA correctness tests" 90 "$PYTHON" -m pytest -p no:cacheprovider -q -m gpu \
        tests/pairrm/test_cuda.py tests/genfuser/test_cuda.py --junitxml "$OUT/pytest-gpu.xml"
    step "PairRM bf16: original vs eager, SDPA and the Triton kernels" 120 "$PYTHON" \
        benchmarks/bench_pairrm.py "${pairrm[@]}" --dtypes bfloat16 --data "$results" \
        --variants eager sdpa disentangled-flash flashdeberta \
        --json "$OUT/pairrm-bfloat16.json" --profile "$OUT/profiles"
    step "GenFuser, the original's 4 beams" 75 "$PYTHON" benchmarks/bench_genfuser.py \
        "${genfuser[@]}" --num-beams 4 --data "$results" --json "$OUT/genfuser-beam4.json"
    step "PairRM fp16: original vs eager and SDPA" 45 "$PYTHON" benchmarks/bench_pairrm.py \
        "${pairrm[@]}" --dtypes float16 --variants eager sdpa --data "$results" \
        --json "$OUT/pairrm-float16.json"
    step "GenFuser, greedy (streamed: time to the first token)" 40 "$PYTHON" \
        benchmarks/bench_genfuser.py "${genfuser[@]}" --num-beams 1 --data "$results" \
        --json "$OUT/genfuser-greedy.json"
    step "PairRM bf16: SDPA + torch.compile" 110 "$PYTHON" benchmarks/bench_pairrm.py \
        "${pairrm[@]}" --dtypes bfloat16 --variants sdpa+compile --data "$results" \
        --json "$OUT/pairrm-bfloat16-compile.json"
    if [ -d "$OUT/profiles" ]; then
        tar -czf "$OUT/profiles.tgz" -C "$OUT" profiles && rm -rf "$OUT/profiles"
    fi
    echo "=== done $(date -u +%T)"
}

case "$MODE" in
    prepare) prepare ;;
    run)
        OUT=${OUT:?run on the device machine, where OUT is set}
        "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
            --target /tmp/site .whl/*.whl || exit 1
        export PYTHONPATH=/tmp/site:$PWD
        checks cuda 2>&1 | tee "$OUT/gpu_check.log"
        ;;
    dry)
        OUT=${OUT:-$(mktemp -d)}
        export PYTHONPATH=$PWD OUT
        checks cpu 2>&1 | tee "$OUT/gpu_check.log"
        ls -la "$OUT"
        ;;
    *) echo "usage: $0 prepare|run|dry" >&2; exit 2 ;;
esac
