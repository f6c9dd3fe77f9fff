#!/usr/bin/env bash
# Ablation of the context CNN bundle's docs, at equal training minutes: K = 2 against K = 3 neighbours per side,
# brain-only against mixed-domain training, 64 against 96 channels. The four runs train side by side, one thread each
# (so they share the machine equally), from scratch, on the bundle's training split; the 96-channel run gets half the
# iterations (2.2x the multiply-adds per iteration). Then the validation split through the protocol.
# Usage, from the repository root: scripts/ablation_context_cnn.sh [WORK_DIR]   (about 40 min on 2 CPU cores)
set -euo pipefail
WORK=${1:-runs/ablation_context_cnn}
DATA=$(realpath ../shared/data/mri)
BUNDLE=bundles/mri_slice_interpolation_context_cnn
mkdir -p "$WORK"
# name | context | channels | training datasets | epochs of 100 iterations
RUNS=(
    "k2_mixed_c64 2 64 None 8"
    "k3_mixed_c64 3 64 None 8"
    "k2_brain_c64 2 64 ['ds002748','ds011'] 8"
    "k2_mixed_c96 2 96 None 4"
)
for spec in "${RUNS[@]}"; do
    read -r name context channels datasets epochs <<< "$spec"
    rm -rf "${WORK:?}/$name"
    mkdir -p "$WORK/$name/models"
    cp -r "$BUNDLE/configs" "$WORK/$name/"
    python - "$WORK/$name/configs/inference.json" "$context" "$channels" <<'PY'
import json, sys
path, context, channels = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
config = json.load(open(path))
config.update(context=context, channels=channels)
json.dump(config, open(path, "w"), indent=4)
PY
    (cd "$WORK/$name" && OMP_NUM_THREADS=1 python -m monai.bundle run training --config_file configs/train.json \
        --dataset_dir "$DATA" --pretrained "" --context "$context" --channels "$channels" --train_datasets "$datasets" \
        --epoch_length 100 --max_epochs "$epochs" --val_interval $((epochs / 2)) > train.log 2>&1) &
done
wait
misr evaluate --datalist data_lists/ds002748.json data_lists/ds011_t1w.json data_lists/prostate3t.json --split validation \
    --dataset-dir "$DATA" --no-figures --methods "linear,cubic,$(printf "$WORK/%s," k2_mixed_c64 \
    k3_mixed_c64 k2_brain_c64 k2_mixed_c96 | sed 's/,$//')" --out "$WORK/validation"
