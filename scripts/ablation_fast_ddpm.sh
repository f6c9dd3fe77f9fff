#!/usr/bin/env bash
# Ablation of the Fast-DDPM bundle's docs, at equal training iterations (one CPU thread each, from scratch, on the
# bundle's training split): what is diffused (the slice itself as the official Fast-DDPM, the residual over the
# neighbours' mean as release 0.3, the residual over the frozen residual CNN) and what the network predicts (v or x0).
# No EMA here: at a few hundred iterations an EMA of 0.999 is still mostly its initial weights; the shipped run
# measures EMA against none on the same weights. The score is each run's own validation, the K = 4 mean's PSNR.
# Usage, from the repository root: scripts/ablation_fast_ddpm.sh [WORK_DIR] [ITERATIONS]   (about 20 min a run)
set -euo pipefail
WORK=${1:-runs/ablation_fast_ddpm}
ITERATIONS=${2:-800}
DATA=$(realpath ../shared/data/mri)
BUNDLE=bundles/mri_slice_interpolation_fast_ddpm
# name | skip | prediction type
RUNS=(
    "image_v none v_prediction"
    "mean_v mean v_prediction"
    "base_v base v_prediction"
    "base_x0 base sample"
)
for spec in "${RUNS[@]}"; do
    read -r name skip prediction <<< "$spec"
    rm -rf "${WORK:?}/$name"
    mkdir -p "$WORK/$name"
    OMP_NUM_THREADS=1 python -m monai.bundle run training --config_file "$BUNDLE/configs/train.json" \
        --bundle_root "$BUNDLE" --dataset_dir "$DATA" --output_dir "$WORK/$name" --ckpt_dir "$WORK/$name/models" \
        --pretrained "" --skip "$skip" --prediction_type "$prediction" --validate_ema False \
        --epoch_length $((ITERATIONS / 2)) --max_epochs 2 --val_interval 1 > "$WORK/$name/train.log" 2>&1
    echo "$name: $(grep -o 'val_psnr: [0-9.]*' "$WORK/$name/train.log" | tr '\n' ' ')"
done
