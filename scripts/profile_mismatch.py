"""What a wrong slice profile costs: one test volume per dataset simulated at each true profile width w (the thick-slice
protocol's box, w x FACTOR slices wide), upsampled by a context model told each assumed width, scored against cubic.

Usage: python scripts/profile_mismatch.py MODEL FACTOR VOLUME... (paths under ../shared/data/mri); prints a markdown
table of per-slice PSNR and psnr_core gains over cubic (dB).
"""

from __future__ import annotations

import sys
from pathlib import Path

from misr_monai.apps.evaluation import evaluate_volume
from misr_monai.interpolation import cubic_interpolate
from misr_monai.io import load_volume
from misr_monai.predictors.registry import load_predictor
from misr_monai.transforms.utils import find_slice_axis

WIDTHS = (0.0, 0.5, 1.0)


def main(model: str, factor: int, volumes: list[str]) -> None:
    predictor = load_predictor(model, precision="bf16")  # bf16: within 0.01 dB of fp32 for the context models
    print(f"| volume | true w | cubic psnr / core | " + " | ".join(f"told w = {w}" for w in WIDTHS) + " |")
    print("|---|---|---|" + "---|" * len(WIDTHS))
    for volume in volumes:
        truth, img = load_volume(Path("../shared/data/mri") / volume)
        axis = find_slice_axis(img.affine)
        for true in WIDTHS:
            base = evaluate_volume(truth, axis, {"cubic": cubic_interpolate}, factor, true)[0]["cubic"]
            cells = []
            for told in WIDTHS:
                s = evaluate_volume(truth, axis, {model: predictor}, factor, true, told)[0][model]
                cells.append(f"{s['psnr'] - base['psnr']:+.2f} / {s['psnr_core'] - base['psnr_core']:+.2f}")
            print(f"| {volume} | {true} | {base['psnr']:.2f} / {base['psnr_core']:.2f} | " + " | ".join(cells) + " |",
                  flush=True)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3:])
