#!/usr/bin/env python3
"""The reformats a radiologist would scroll: zoomed sagittal or coronal planes through the slice axis of a brain and a
prostate test volume, the protocol's x2 truth beside cubic and the models, each titled with its PSNR, sharpness and
high-frequency ratio on that volume (../shared/EVALUATION.md).

Usage: scripts/sharpness_figure.py OUT.png [METHOD...]   (default: cubic context_cnn srgan fast_ddpm:k1)
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from misr_monai.apps.evaluation import evaluate_volume, read_protocol_volume
from misr_monai.apps.figures import reformat_figure
from misr_monai.predictors.registry import load_predictor
from misr_monai.transforms.utils import percentile_scale_factor

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "mri"
VOLUMES = ["ds002748/sub-18_T1w.nii.gz", "prostatex/ProstateX-0000_T2_tra.nii.gz"]


def main(argv: list[str]) -> int:
    out, methods = Path(argv[0]), argv[1:] or ["cubic", "context_cnn", "srgan", "fast_ddpm:k1"]
    predictors = {m: load_predictor(m, precision="bf16" if m.startswith("fast_ddpm") else "fp32", seed=0) for m in methods}
    rows = []
    for volume in VOLUMES:
        truth, img, axis = read_protocol_volume({"image": str(DATA / volume)})
        scores, reconstructions = evaluate_volume(truth, axis, predictors)
        scale = percentile_scale_factor(truth)
        n = next(iter(reconstructions.values())).shape[axis]
        rows.append({"name": volume, "affine": img.affine, "axis": axis, "scores": scores,
                     "truth": np.clip(np.take(truth, np.arange(n), axis=axis) / scale, 0, 1),
                     "reconstructions": {m: np.clip(r / scale, 0, 1) for m, r in reconstructions.items()}})
        print(volume + ": " + ", ".join(f"{m} {s['psnr']:.2f} dB sharpness {s['sharpness']:.3f} hf {s['hf_ratio']:.3f}"
                                        for m, s in scores.items()))
    reformat_figure(rows, out, "x2 through-plane (every other slice kept, the others reconstructed): zoomed reformats; "
                               "sharpness and hf: the new slices over the acquired ones (1: no banding)")
    print(f"{out}: figure")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
