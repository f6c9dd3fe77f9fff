#!/usr/bin/env python3
"""The srgan bundle's perception-distortion curve: per-slice PSNR against sharpness over its knob A, per test split,
from a `misr compare` summary that holds cubic, context_cnn (A = 0) and srgan@A rows.

Usage: scripts/sharpness_curve.py SUMMARY.csv OUT.png   (prints the markdown table of the bundle's docs)
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

from misr_monai.predictors.registry import bundle_folder, split_sharpness


def main(argv: list[str]) -> int:
    rows = list(csv.DictReader(open(argv[0], newline="")))
    out = Path(argv[1])
    cubic = {r["dataset"]: float(r["psnr"]) for r in rows if r["method"] == "cubic"}
    default = json.loads((bundle_folder("srgan") / "configs" / "inference.json").read_text())["sharpness"]
    points: dict[str, list[tuple[float, dict]]] = {}
    for r in rows:
        name, a = split_sharpness(r["method"])
        a = 0.0 if r["method"] == "context_cnn" else default if r["method"] == "srgan" else a
        if a is not None and name in ("srgan", "context_cnn"):
            points.setdefault(r["dataset"], []).append((a, r))
    print("| test split | A | PSNR | gain over cubic | psnr_core (cubic) | sharpness | hf_ratio | edge_ratio | tp_ratio |")
    print("|---|---|---|---|---|---|---|---|---|")
    core = {r["dataset"]: float(r["psnr_core"]) for r in rows if r["method"] == "cubic"}
    for dataset, series in points.items():
        for a, r in sorted(series, key=lambda p: p[0]):
            print(f"| {dataset} | {a:g}{' (default)' if a == default else ''} | {float(r['psnr']):.2f} | {float(r['psnr']) - cubic[dataset]:+.2f} | "
                  f"{float(r['psnr_core']):.2f} ({core[dataset]:.2f}) | {float(r['sharpness']):.3f} | "
                  f"{float(r['hf_ratio']):.3f} | {float(r['edge_ratio']):.3f} | {float(r['tp_ratio']):.3f} |")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(points), figsize=(3.6 * len(points), 3.4), squeeze=False)
    for ax, (dataset, series) in zip(axes[0], points.items()):
        series = sorted(series, key=lambda p: p[0])
        ax.plot([float(r["sharpness"]) for _, r in series], [float(r["psnr"]) for _, r in series], "o-")
        for a, r in series:
            ax.annotate(f"A={a:g}", (float(r["sharpness"]), float(r["psnr"])), fontsize=7, textcoords="offset points",
                        xytext=(3, 3))
        c = next(r for r in rows if r["dataset"] == dataset and r["method"] == "cubic")
        ax.plot([float(c["sharpness"])], [float(c["psnr"])], "s", color="gray", label="cubic")
        ax.axhline(cubic[dataset] + 1.0, color="gray", linestyle=":", linewidth=1, label="cubic + 1 dB")
        ax.axvspan(0.9, 1.1, color="green", alpha=0.08, label="sharpness 0.9-1.1")
        ax.set_title(dataset, fontsize=9)
        ax.set_xlabel("sharpness (new / acquired slices)")
        ax.set_ylabel("per-slice PSNR (dB)")
        ax.legend(fontsize=6)
    fig.suptitle("srgan: PSNR against sharpness over the knob A (0: context_cnn), test splits, x2", fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    print(f"{out}: figure")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
