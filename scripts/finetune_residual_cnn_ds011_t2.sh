#!/usr/bin/env bash
# Fine-tuning experiment of the residual CNN bundle's docs: ds011 inplaneT2 (5 mm brain T2, unseen by the shipped
# weights), 600 iterations from the shipped weights and from scratch, then the test split through the protocol.
# Usage, from the repository root: scripts/finetune_residual_cnn_ds011_t2.sh [WORK_DIR]   (6 min on 2 CPU cores; 15 min beside a test run)
set -euo pipefail
WORK=${1:-runs/finetune_ds011_t2}
DATA=$(realpath ../shared/data/mri)
DATALIST=$(realpath data_lists/ds011_t2.json)   # misr datalist ../shared/data/mri --pattern "ds011/*_inplaneT2.nii.gz" --val 1 --test 2
mkdir -p "$WORK"
for run in finetuned scratch; do
    rm -rf "${WORK:?}/$run"
    cp -r bundles/mri_slice_interpolation_residual_cnn "$WORK/$run"
    rm -rf "$WORK/$run/runs" "$WORK/$run/eval"
done
(cd "$WORK/finetuned" && python -m monai.bundle run training --config_file configs/train.json --dataset_dir "$DATA" \
    --datalist_file "$DATALIST" --max_epochs 3 --val_interval 1 > ../finetuned.log 2>&1)
(cd "$WORK/scratch" && python -m monai.bundle run training --config_file configs/train.json --dataset_dir "$DATA" \
    --datalist_file "$DATALIST" --max_epochs 3 --val_interval 1 --pretrained "" > ../scratch.log 2>&1)
misr evaluate --datalist "$DATALIST" --split test --dataset-dir "$DATA" --no-figures \
    --methods "linear,cubic,residual_cnn,$WORK/finetuned,$WORK/scratch" --out "$WORK/test"
