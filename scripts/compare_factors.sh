#!/usr/bin/env bash
# The comparison at every factor and both protocols (thin, and thick: ../shared/EVALUATION.md), every shipped model
# that can give the factor beside linear and cubic (a midpoint model is left out at 3 and 5, in one line). Two runs at
# a time, one thread each; each is resumable through its cache (results/xF[_thick]/cache).
# Usage: scripts/compare_factors.sh [OUT_ROOT]   (default: results)
set -euo pipefail
root=${1:-results}
models="[residual_cnn, srgan, context_cnn, context_cnn_brain]"
run() {  # FACTOR THICK
    local out=$root/x$1$([ "$2" = true ] && echo _thick)
    OMP_NUM_THREADS=1 misr compare configs/comparison.yaml --out "$out" --factor "$1" --thick "$2" \
        --methods "$models" --figures "[]" > "$out.log" 2>&1
}
mkdir -p "$root"
(run 2 false; run 4 false; run 2 true) &
(run 3 false; run 5 false; run 3 true) &
wait
for out in "$root"/x*/; do echo "== $out"; cat "$out/summary.md"; cat "$out/positions.md"; done
