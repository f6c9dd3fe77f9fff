#!/usr/bin/env bash
# The context models' long run on one GPU, every configuration from its bundle's own train.json:
#   warm  - context_cnn warm-started from the weights of residual_cnn_4slice, release 0.4.0 (its last; the spline
#           channel zero-initialised), read from this repository's history
#   cold  - context_cnn from nothing (the untrained network is cubic exactly), for the warm-start comparison
#   brain - context_cnn_brain warm-started from its own shipped weights
# The three share the GPU for the same wall-clock minutes (equal minutes, so the warm/cold comparison is fair). Each
# run's length (epochs of 500 iterations, cosine schedule over them) is set from a measured speed so that it ends
# within MINUTES; a TimeLimit stops it there in any case. Usage:
#   scripts/train_context_models.sh OUT_DIR DATASET_DIR MINUTES [BATCH]
# DATALIST=file replaces the bundles' datalists (for example, to leave out volumes that are not at DATASET_DIR).
set -euo pipefail
out=$1 data=$2 minutes=$3 batch=${4:-16}
here=$(cd "$(dirname "$0")/.." && pwd)
bundles=$here/bundles
mkdir -p "$out"
four_slice=$out/residual_cnn_4slice_0.4.0.pt
git -C "$here" show 890eb0e:bundles/mri_slice_interpolation_residual_cnn_4slice/models/model.pt > "$four_slice"
list=(${DATALIST:+--datalist "$DATALIST"})
python3 -m misr_monai benchmark --training context_cnn --dataset-dir "$data" --batch-size "$batch" --iterations 100 "${list[@]}" \
    2>&1 | grep -v -i warn | tee "$out/benchmark_training.log"
# iterations/s of one run when three share the device: the measured end-to-end rate, or a third of the step rate
epochs=$(python3 - "$out/benchmark_training.log" "$minutes" <<'PY'
import re, sys
log = open(sys.argv[1]).read()
step_ms = float(re.search(r"step alone: ([0-9.]+) ms", log).group(1))
end_to_end = float(re.search(r"end to end: ([0-9.]+) iterations/s", log).group(1))
rate = 0.75 * min(end_to_end, 1000 / (3 * step_ms))
print(max(1, int(rate * 60 * float(sys.argv[2]) / 500)))
PY
)
echo "each run: $epochs epochs of 500 iterations, at most $minutes minutes"
common=(--dataset_dir "$data" --batch_size "$batch" --epoch_length 500 --max_epochs "$epochs" --val_interval 4
        --max_minutes "$minutes" ${DATALIST:+--datalist_file "$DATALIST"})
run() {  # NAME BUNDLE PRETRAINED
    python3 -m monai.bundle run training --config_file "$bundles/$2/configs/train.json" --bundle_root "$bundles/$2" \
        --output_dir "$out/$1" --ckpt_dir "$out/$1/models" --pretrained "$3" "${common[@]}" \
        > "$out/$1.log" 2>&1 &
}
run warm mri_slice_interpolation_context_cnn "$four_slice"
run cold mri_slice_interpolation_context_cnn ""
run brain mri_slice_interpolation_context_cnn_brain "$bundles/mri_slice_interpolation_context_cnn_brain/models/model.pt"
wait
grep -h -E "val_psnr|Key metric" "$out"/*.log | tail -n 20 || true
