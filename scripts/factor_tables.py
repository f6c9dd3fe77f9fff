"""The tables of docs/release_0.8.0_any_factor.md at every factor, from the runs of scripts/compare_factors.sh (results/xF[_thick]/).

Usage: python scripts/factor_tables.py [RESULTS]   (default: results); prints markdown.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

DATASETS = ("ds002748", "ds011", "prostate3t", "prostatex")
MODELS = ("residual_cnn", "srgan", "context_cnn", "context_cnn_brain")


def _rows(path: Path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


def main(root: Path) -> None:
    runs = sorted((p for p in root.glob("x*") if (p / "summary.csv").is_file()),
                  key=lambda p: (p.name.endswith("_thick"), int(p.name[1:].split("_")[0])))
    for thick in (False, True):
        print(f"\n{'Thick' if thick else 'Thin'} protocol: cubic PSNR / psnr_vol / psnr_core (dB), each model's "
              "gain over it in PSNR / psnr_core, and sharpness (cubic's in brackets):\n")
        print("| test split | factor | cubic | " + " | ".join(MODELS) + " | sharpness: " + " / ".join(MODELS) + " (cubic) |")
        print("|---|---|---|" + "---|" * len(MODELS) + "---|")
        for run in (r for r in runs if r.name.endswith("_thick") == thick):
            factor = run.name[1:].split("_")[0]
            summary = _rows(run / "summary.csv")
            for dataset in DATASETS:
                by = {r["method"]: r for r in summary if r["dataset"] == dataset}
                if "cubic" not in by:
                    continue
                c = by["cubic"]
                cells = [f"{float(by[m]['psnr']) - float(c['psnr']):+.2f} / "
                         f"{float(by[m]['psnr_core']) - float(c['psnr_core']):+.2f}" if m in by else "-" for m in MODELS]
                sharp = " / ".join(f"{float(by[m]['sharpness']):.2f}" if m in by else "-" for m in MODELS)
                print(f"| {dataset} ({c['volumes']}) | x{factor} | {float(c['psnr']):.2f} / {float(c['psnr_vol']):.2f} / "
                      f"{float(c['psnr_core']):.2f} | " + " | ".join(cells) + f" | {sharp} ({float(c['sharpness']):.2f}) |")
    print("\nPer position t in the gap (thin protocol): per-slice PSNR gain over cubic of context_cnn / context_cnn_brain:\n")
    print("| test split | factor | cubic at t = 1/F ... (F-1)/F | context_cnn | context_cnn_brain |")
    print("|---|---|---|---|---|")
    for run in (r for r in runs if not r.name.endswith("_thick")):
        factor = run.name[1:]
        positions = _rows(run / "positions.csv")
        for dataset in DATASETS:
            by = {}
            for r in positions:
                if r["dataset"] == dataset:
                    by.setdefault(r["method"], []).append(float(r["psnr"]))
            if "cubic" not in by:
                continue
            gains = {m: " ".join(f"{a - b:+.2f}" for a, b in zip(by[m], by["cubic"])) for m in by}
            print(f"| {dataset} | x{factor} | {' '.join(f'{v:.2f}' for v in by['cubic'])} | "
                  f"{gains.get('context_cnn', '-')} | {gains.get('context_cnn_brain', '-')} |")
    print("\nCore of every volume: psnr_core minus cubic's, the smallest over the test volumes (volumes above cubic / all):\n")
    print("| protocol | factor | " + " | ".join(MODELS) + " |")
    print("|---|---|" + "---|" * len(MODELS))
    for run in runs:
        rows = _rows(run / "per_volume.csv")
        cubic = {r["volume"]: float(r["psnr_core"]) for r in rows if r["method"] == "cubic"}
        cells = []
        for m in MODELS:
            diffs = [float(r["psnr_core"]) - cubic[r["volume"]] for r in rows if r["method"] == m]
            cells.append(f"{min(diffs):+.2f} ({sum(d > 0 for d in diffs)}/{len(diffs)})" if diffs else "-")
        protocol = "thick" if run.name.endswith("_thick") else "thin"
        print(f"| {protocol} | x{run.name[1:].split('_')[0]} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "results"))
