# Copyright (c) misr_monai contributors. Licensed under the Apache License, Version 2.0.
"""The report of ``misr compare``: tables in markdown, the original project's claims tested, ``report.md`` and
``report.html``."""

from __future__ import annotations

import platform
from pathlib import Path

import numpy as np

from misr_monai.engines import versions
from misr_monai.apps.tables import format_value, markdown_table
from misr_monai.interpolation import BASELINES
from misr_monai.io import atomic_write

__all__ = ["ORIGINAL_TABLE", "MIN_VOLUMES", "summary_markdown", "paired_markdown", "claims", "write_report"]

MIN_VOLUMES = 6
"""The fewest paired volumes for which a two-sided Wilcoxon signed-rank test can reach p < 0.05 (exact: 2 / 2**6)."""
ORIGINAL_TABLE = {"residual_cnn": (29.03, 0.843), "srgan": (29.05, 0.850), "fast_ddpm": (27.02, 0.801)}
"""The original project's table (PSNR dB, SSIM; one unnamed prostate set, metric convention unstated)."""


def _cell(item: dict, metric: str) -> str:
    std = item.get("psnr_std" if metric == "psnr" else f"{metric}_std", float("nan"))
    return format_value(item[metric]) + ("" if np.isnan(std) else f" ± {format_value(std)}")


def summary_markdown(summary: list[dict], metrics) -> str:
    """One table per dataset: mean ± std over volumes of each metric, gains, time and cost per method."""
    parts = []
    for dataset in dict.fromkeys(s["dataset"] for s in summary):
        items = [s for s in summary if s["dataset"] == dataset]
        header = ["method", "volumes", *metrics, "vs linear dB", "vs cubic dB", "s/volume", "params", "MACs/voxel"]
        lines = [[s["method"], str(s["volumes"]), *(_cell(s, m) for m in metrics), f"{s['gain_db']:+.2f}",
                  f"{s['gain_cubic_db']:+.2f}", f"{s['seconds_per_volume']:.1f}", f"{s['params']:,}",
                  f"{s['macs_per_voxel']:,.0f}"] for s in items]
        parts.append(f"### {dataset} ({items[0]['volumes']} volumes, {items[0]['slices']} reconstructed slices)\n\n"
                     + markdown_table(header, lines))
    return "\n".join(parts)


def paired_markdown(paired: list[dict]) -> str:
    header = ["dataset", "metric", "method - versus", "volumes", "mean diff", "95% CI", "Wilcoxon p", "verdict"]
    lines = [[p["dataset"], p["metric"], f"{p['method']} - {p['versus']}", str(p["volumes"]), f"{p['mean_diff']:+.4f}",
              "" if np.isnan(p["ci_low"]) else f"[{p['ci_low']:+.4f}, {p['ci_high']:+.4f}]",
              "" if np.isnan(p["wilcoxon_p"]) else f"{p['wilcoxon_p']:.3f}", p["verdict"]] for p in paired]
    return markdown_table(header, lines)


def _verdict(hits: list[str], datasets: list[str]) -> str:
    return "holds" if len(hits) == len(datasets) else "does not hold" if not hits else "depends on the dataset"


def claims(summary: list[dict], rows: list[dict], paired: list[dict]) -> list[str]:
    """The original project's three claims, each tested on these results: verdict and evidence, one markdown item each.

    The claims are about its three models, so they are weighed among those and the baselines only."""
    names = list(dict.fromkeys(s["method"] for s in summary))
    ddpm = next((m for m in ("fast_ddpm:k1", "fast_ddpm") if m in names), None)  # the claim is about its samples
    methods = [m for m in names if m in BASELINES or m in ORIGINAL_TABLE or m == ddpm]
    datasets = list(dict.fromkeys(s["dataset"] for s in summary))
    mean = {(s["dataset"], s["method"]): s for s in summary}
    out = []
    if "srgan" in methods:
        best = {d: [max(methods, key=lambda m: mean[d, m][k]) for k in ("psnr", "ssim")] for d in datasets}
        hits = [d for d in datasets if best[d] == ["srgan", "srgan"]]
        pooled = [p for p in paired if p["dataset"] == "all" and p["metric"] == "psnr" and "srgan" in (p["method"], p["versus"])
                  and {p["method"], p["versus"]} <= set(methods)]
        out.append(f"**The SRGAN has the best PSNR/SSIM: {_verdict(hits, datasets)}.** Best PSNR / SSIM per dataset: "
                   + "; ".join(f"{d} {b[0]} / {b[1]}" for d, b in best.items()) + ". Pooled paired PSNR: "
                   + "; ".join(f"{p['method']} - {p['versus']} {p['mean_diff']:+.2f} dB ({p['verdict']})" for p in pooled) + ".")
    if ddpm:
        best = {d: min(methods, key=lambda m: abs(mean[d, m]["tp_ratio"] - 1)) for d in datasets}
        hits = [d for d in datasets if best[d] == ddpm]
        closest = {d: min((m for m in methods if m != ddpm), key=lambda m: abs(mean[d, m]["tp_ratio"] - 1))
                   for d in datasets}
        evidence = "; ".join(f"{d} {mean[d, ddpm]['tp_ratio']:.3f} against {m} {mean[d, m]['tp_ratio']:.3f}"
                             for d, m in closest.items())
        out.append(f"**The diffusion model gives the best through-plane continuity: {_verdict(hits, datasets)}** by "
                   f"`tp_ratio` (closest to 1). Per dataset, {ddpm} against the closest other method: {evidence}. "
                   "`tp_ratio` compares the size of the second differences along the slice axis, so sampling noise "
                   "raises it as well as real detail does: read it beside the sampler's MAE and the reformat figures.")
    models = [m for m in methods if m not in BASELINES]
    if "residual_cnn" in models and len(models) > 1:
        cost = {m: (mean[datasets[0], m]["params"], mean[datasets[0], m]["macs_per_voxel"]) for m in models}
        light = all(cost["residual_cnn"][0] <= c[0] and cost["residual_cnn"][1] <= c[1] for c in cost.values())
        cubic = {(r["dataset"], r["volume"]): r["psnr"] for r in rows if r["method"] == "cubic"}
        gains = {m: np.array([r["psnr"] - cubic[r["dataset"], r["volume"]] for r in rows if r["method"] == m]) for m in models}
        spread = {m: float(np.std(g)) for m, g in gains.items()}
        below = {m: int((g < 0).sum()) for m, g in gains.items()}
        stable = min(models, key=lambda m: (below[m], spread[m])) == "residual_cnn"
        verdict = "holds" if light and stable else "does not hold" if not (light or stable) else "holds in part"
        out.append(f"**The CNN is light and stable: {verdict}.** Parameters / multiply-adds per output voxel: "
                   + "; ".join(f"{m} {c[0]:,} / {c[1]:,.0f}" for m, c in cost.items())
                   + ". Stable: fewest volumes below cubic in PSNR, then the smallest spread of the per-volume gain over "
                   "cubic (std over all volumes): " + "; ".join(f"{m} {below[m]} of {len(gains[m])} below, {spread[m]:.2f} dB"
                                                                for m in models) + ".")
    return out


def _original_table(summary: list[dict]) -> str:
    mean = {(s["dataset"], s["method"]): s for s in summary}
    sets = [d for d in dict.fromkeys(s["dataset"] for s in summary) if d.startswith("prostate")]
    header = ["method", "original (unnamed prostate set)", *sets]
    lines = [[m, f"{o[0]:.2f} / {o[1]:.3f}", *(f"{mean[d, m]['psnr']:.2f} / {mean[d, m]['ssim']:.3f}" for d in sets)]
             for m, o in ORIGINAL_TABLE.items() if all((d, m) in mean for d in sets)]
    return markdown_table(header, lines) if sets and lines else ""


def _versions() -> dict:
    return {**versions(), "numpy": np.__version__, "python": platform.python_version(), "machine": platform.machine()}


def write_report(experiment, methods, metrics, summary, rows, paired, figures, out, command, seconds, settings) -> Path:
    """Write ``report.md`` and ``report.html`` into ``out``: settings, versions, tables, paired statistics, the claims,
    the figures and the weights' sha256; return the markdown file."""
    computed = sum(r["seconds"] for r in rows)
    versions = ", ".join(f"{k} {v}" for k, v in _versions().items())
    weights = [[m, s["weights_sha256"] or "missing"] for m, s in settings.items() if "weights_sha256" in s]
    shown = [p for p in paired if p["dataset"] == "all"] + [p for p in paired if p["dataset"] != "all" and p["metric"] == "psnr"]
    images = "\n\n".join(f"![{p.stem}]({p.relative_to(out).as_posix()})" for p in figures)
    text = f"""# Slice interpolation: three models and two baselines compared

Command: `{command or 'misr compare'}`

- Protocol: `../shared/EVALUATION.md` through `misr_monai.apps.evaluation` (odd slices reconstructed from the even ones,
  intensities scaled by each volume's 99.5th percentile, metrics on the reconstructed slices).
- Methods: {', '.join(methods)}; seed {experiment.get('seed', 0)}, sampling models' samples per slice
  {experiment.get('samples', 1)}, precision {experiment.get('precision', 'fp32')}{''.join(f' ({m}: {p})' for m, p in experiment.get('precisions', {}).items())}, device {experiment.get('device', 'cpu')}.
- Run time of this call: {seconds:.0f} s (cached results are not recomputed); reconstruction time of every result: {computed:.0f} s.
- Versions: {versions}.

## Results per dataset (mean ± std over volumes)

PSNR and SSIM in the protocol's convention; `tp_ratio` is through-plane continuity (1 ideal, below 1 too smooth,
above 1 flicker); `sharpness` is the mean |in-plane Laplacian| of the new slices over that of the original slices of
the same volume (1 ideal: no alternation of sharp and soft slices when scrolling; below 1 blurrier); `hf_ratio` is
their foreground power above half the in-plane Nyquist frequency over the original slices' (above 1: added noise or
texture); gains are mean PSNR differences; params and multiply-adds per output voxel are counted on the
network by `torch.utils.flop_counter` (every denoising pass and sample of a sampling model).

{summary_markdown(summary, metrics)}
## Paired differences over volumes

Mean of the per-volume differences `method - versus`, its 95% percentile-bootstrap interval
({experiment.get('bootstrap_resamples', 10000)} resamples of the volumes) and the two-sided Wilcoxon signed-rank
p-value. A verdict names a winner only where the interval excludes 0 and p < 0.05; below {MIN_VOLUMES} volumes a
Wilcoxon test cannot reach p < 0.05 and a bootstrap over so few volumes is too narrow, so there is no verdict: read
the pooled rows (`all`, every volume of every dataset; every paired metric), then PSNR per dataset. Everything:
`paired.csv`.

{paired_markdown(shown)}
## The original project's claims, tested

""" + "\n".join(f"- {c}" for c in claims(summary, rows, paired)) + f"""

## Beside the original project's table

{_original_table(summary)}
The original numbers (PSNR dB / SSIM) come from one unnamed prostate set with an unpublished training notebook and
an unstated metric convention (intensity range, slices scored, foreground); ours follow `../shared/EVALUATION.md` on
named test splits. They are not directly comparable: read the ranking, not the decibels.

## Figures

Every panel in the radiological view (axial: anterior up, patient's right on the left; sagittal and coronal:
superior up), from each volume's affine.

{images}

## Weights (sha256)

{markdown_table(['method', 'models/model.pt sha256'], weights) if weights else 'none'}
Files: `summary.{{csv,md}}`, `paired.{{csv,md}}`, `per_volume.{{csv,md}}`; cached per-volume results in `cache/`.
"""
    atomic_write(out / "report.md", lambda tmp: Path(tmp).write_text(text))
    import markdown

    html = markdown.markdown(text, extensions=["tables"])
    page = f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>misr compare</title></head><body>{html}</body></html>"
    atomic_write(out / "report.html", lambda tmp: Path(tmp).write_text(page))
    return out / "report.md"
