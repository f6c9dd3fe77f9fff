#!/usr/bin/env bash
# DDIM eta against sample sharpness, the K = 8 mean and the raw coverage (the Fast-DDPM bundle's docs): two copies of
# the bundle with eta 0.5 and 1.0 beside the shipped one (eta 0), scored by misr compare at K = 1 and K = 8 on two
# validation volumes (one prostate, one 1 mm brain; about 35 min on one CPU thread).
# Usage, from the repository root: scripts/eta_sweep_fast_ddpm.sh [WORK_DIR]
set -euo pipefail
WORK=$(realpath -m "${1:-runs/eta_sweep}")
BUNDLE=bundles/mri_slice_interpolation_fast_ddpm
mkdir -p "$WORK"
for eta in 0.5 1.0; do
    rm -rf "${WORK:?}/eta$eta"
    mkdir -p "$WORK/eta$eta"
    cp -r "$BUNDLE/configs" "$BUNDLE/models" "$WORK/eta$eta/"
    sed -i "s/\"eta\": 0.0,/\"eta\": $eta,/" "$WORK/eta$eta/configs/inference.json"
done
cat > "$WORK/datalist.json" <<JSON
{"validation": [{"image": "prostate3t/Prostate3T-03-0005_T2_tra.nii.gz", "subject": "Prostate3T-03-0005"},
                {"image": "ds002748/sub-09_T1w.nii.gz", "subject": "sub-09"}]}
JSON
cat > "$WORK/eta_sweep.yaml" <<YAML
dataset_dir: ../shared/data/mri
split: validation
datasets:
  validation: {datalist: $WORK/datalist.json, split: "@split", dataset_dir: "@dataset_dir"}
methods: [linear, cubic, context_cnn, "fast_ddpm:k1", "fast_ddpm:k8", "$WORK/eta0.5:k1", "$WORK/eta0.5:k8", "$WORK/eta1.0:k1", "$WORK/eta1.0:k8"]
metrics: [psnr, psnr_vol, psnr_core, edge_ratio, tp_ratio, sharpness, coverage_2std, spearman_std]
paired_metrics: [psnr, psnr_core]
reference: cubic
bootstrap_resamples: 1000
precisions: {fast_ddpm: bf16, $WORK/eta0.5: bf16, $WORK/eta1.0: bf16}
seed: 0
device: cpu
figures: []
YAML
OMP_NUM_THREADS=1 misr compare "$WORK/eta_sweep.yaml" --out "$WORK/out"
