# Copyright (c) misr_monai contributors. Licensed under the Apache License, Version 2.0.
"""``misr compare``: one experiment file (``configs/comparison.yaml``) into tables, paired statistics, figures and a
report, on the evaluation protocol of :py:mod:`misr_monai.evaluation` (no metric is implemented twice).

Per-volume results are cached in the results folder (``cache/DATASET/VOLUME/METHOD.json``, with the settings that
produced them), so a killed run continues where it stopped and a finished one re-renders its report in seconds.
"""

from __future__ import annotations

import itertools
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

from misr_monai.benchmarks import count_macs
from misr_monai.datalist import load_split
from misr_monai.engines import versions
from misr_monai.evaluation import SUMMARY_COLUMNS, evaluate_volume, format_value, markdown_table, summarize, write_table
from misr_monai.inference import BASELINES, bundle_folder, check_slice_axis, load_predictor
from misr_monai.io import InputError, atomic_write, file_sha256, load_volume, print_error
from misr_monai.metrics import METRICS
from misr_monai.transforms.utils import find_slice_axis, percentile_scale_factor

__all__ = ["load_experiment", "compare", "paired_statistics", "PAIRED_COLUMNS"]

PER_VOLUME_COLUMNS = ("dataset", "volume", "method", "axis", "slices", *METRICS, "seconds")
COMPARE_COLUMNS = (*SUMMARY_COLUMNS, *(f"{m}_std" for m in METRICS if m != "psnr"), "gain_cubic_db",
                   "seconds_per_volume", "params", "macs_per_voxel")
PAIRED_COLUMNS = ("dataset", "metric", "method", "versus", "volumes", "mean_diff", "ci_low", "ci_high", "wilcoxon_p",
                  "verdict")
LOWER_IS_BETTER = ("mae", "mse")
MIN_VOLUMES = 6
"""The fewest paired volumes for which a two-sided Wilcoxon signed-rank test can reach p < 0.05 (exact: 2 / 2**6)."""
ORIGINAL_TABLE = {"residual_cnn": (29.03, 0.843), "srgan": (29.05, 0.850), "fast_ddpm": (27.02, 0.801)}
"""The original project's table (PSNR dB, SSIM; one unnamed prostate set, metric convention unstated)."""


def load_experiment(config: str | os.PathLike, overrides: dict | None = None) -> dict:
    """Read an experiment (YAML or JSON) with MONAI's ``ConfigParser``, apply ``overrides`` (ids may be nested with
    ``#``, as in ``monai.bundle run``) and return it resolved (``@`` references and ``$`` expressions evaluated)."""
    from monai.bundle import ConfigParser

    if not Path(config).is_file():
        raise InputError(f"{config}: experiment config not found.")
    parser = ConfigParser()
    try:
        parser.read_config(str(config))
    except Exception as err:  # YAML and JSON parsers raise their own types
        raise InputError(f"{config}: not a readable YAML/JSON config ({type(err).__name__}).") from None
    parser.update(overrides or {})
    experiment = parser.get_parsed_content()
    for key in ("datasets", "methods"):
        if not experiment.get(key):
            raise InputError(f"{config}: the experiment names no {key}.")
    return experiment



class _Methods:
    """Predictors loaded on first use, and each method's settings (what its cached results depend on)."""

    def __init__(self, experiment: dict) -> None:
        self.experiment = experiment
        self.loaded: dict = {}
        self.known: dict = {}

    def settings(self, method: str) -> dict:
        if method not in self.known:  # each bundle's weights are hashed once per run
            folder = bundle_folder(method)
            weights = None if method in BASELINES or folder is None else folder / "models" / "model.pt"
            self.known[method] = {"method": method} if weights is None else {
                "method": method, "weights_sha256": file_sha256(weights) if weights.is_file() else None,
                "samples": self.experiment.get("samples", 1), "seed": self.experiment.get("seed", 0),
                "precision": self.experiment.get("precision", "fp32")}
        return self.known[method]

    def __getitem__(self, method: str):
        if method not in self.loaded:
            self.loaded[method] = self.load(method, self.experiment.get("samples", 1))
        return self.loaded[method]

    def load(self, method: str, samples: int):
        exp = self.experiment
        return load_predictor(method, exp.get("device", "cpu"), exp.get("batch_size", 8), samples=samples,
                              seed=exp.get("seed", 0), precision=exp.get("precision", "fp32"))


def _stem(volume: str) -> str:
    return volume.replace("/", "_").split(".nii")[0]


def _file_name(method: str) -> str:
    """A method's name in file names: itself, or a bundle folder's path made flat."""
    return method.strip("/").replace("/", "_")


def _volume_rows(dataset: str, spec: dict, entry: dict, methods: list[str], models: _Methods, cache: Path,
                 keep: bool) -> list[dict]:
    """The per-volume rows of every method, from the cache or computed (and cached) through ``evaluate_volume``."""
    folder = cache / dataset / _stem(entry["image"])
    settings = {m: models.settings(m) for m in methods}

    def cached(m):
        path = folder / f"{_file_name(m)}.json"
        if not path.is_file():
            return False
        row = json.loads(path.read_text())  # a result of an older protocol (fewer metrics) is recomputed
        return (row["settings"] == settings[m] and all(k in row for k in (*METRICS, "slice_psnr"))
                and (not keep or (folder / f"{_file_name(m)}.npy").is_file()))

    missing = [m for m in methods if not cached(m)]
    if missing:
        path = Path(spec["dataset_dir"]) / entry["image"]
        truth, img = load_volume(path)
        axis = entry.get("axis", find_slice_axis(img.affine))
        check_slice_axis(path, truth.shape, axis)
        folder.mkdir(parents=True, exist_ok=True)
        for m in missing:
            scores, reconstructions = evaluate_volume(truth, axis, {m: models[m]})
            if keep:
                atomic_write(folder / f"{_file_name(m)}.npy", lambda tmp: np.save(tmp, reconstructions[m].astype(np.float32)))
            row = {"dataset": dataset, "volume": entry["image"], "method": m, "axis": axis, **scores[m],
                   "settings": settings[m]}
            atomic_write(folder / f"{_file_name(m)}.json", lambda tmp: Path(tmp).write_text(json.dumps(row)))
    return [json.loads((folder / f"{_file_name(m)}.json").read_text()) for m in methods]


def _summary(rows: list[dict], costs: dict) -> list[dict]:
    summary = summarize(rows)
    for item in summary:
        group = [r for r in rows if r["dataset"] == item["dataset"] and r["method"] == item["method"]]
        for m in METRICS:
            if m != "psnr":
                item[f"{m}_std"] = float(np.std([r[m] for r in group], ddof=1)) if len(group) > 1 else float("nan")
        cubic = [s["psnr"] for s in summary if s["dataset"] == item["dataset"] and s["method"] == "cubic"]
        item["gain_cubic_db"] = item["psnr"] - cubic[0] if cubic else float("nan")
        item["seconds_per_volume"] = item["seconds"] / item["volumes"]
        item["params"], item["macs_per_voxel"] = costs[item["method"]]
    return summary


def paired_statistics(rows: list[dict], methods: list[str], metrics, reference: str = "cubic",
                      resamples: int = 10000, seed: int = 0) -> list[dict]:
    """Paired differences over volumes: every model against ``reference`` and against every other model.

    Per dataset and pooled over all volumes (``all``): the mean of the per-volume differences ``method - versus``,
    its 95% percentile-bootstrap interval (``resamples`` resamples of the volumes, seeded) and the two-sided Wilcoxon
    signed-rank p-value (exact for small samples). ``verdict`` names the better method where the interval excludes 0
    and p < 0.05; with fewer than :py:data:`MIN_VOLUMES` volumes it gives none, as a percentile bootstrap over a
    handful of volumes is too narrow to trust.
    """
    from scipy.stats import bootstrap, wilcoxon

    models = [m for m in methods if m not in BASELINES]
    pairs = [(m, reference) for m in models] + list(itertools.combinations(models, 2))
    datasets = [*dict.fromkeys(r["dataset"] for r in rows), "all"]
    out = []
    for dataset, metric, (a, b) in itertools.product(datasets, metrics, pairs):
        values = {}
        for r in rows:
            if dataset in ("all", r["dataset"]) and r["method"] in (a, b):
                values.setdefault(r["method"], {})[r["dataset"], r["volume"]] = r[metric]
        keys = sorted(values.get(a, {}).keys() & values.get(b, {}).keys())
        if not keys:
            continue
        diff = np.array([values[a][k] - values[b][k] for k in keys])
        low = high = p = float("nan")
        if len(diff) > 1:
            low = high = float(diff[0])  # every volume differs by the same amount
            if np.ptp(diff) > 0:
                ci = bootstrap((diff,), np.mean, n_resamples=resamples, method="percentile",
                               random_state=np.random.default_rng(seed)).confidence_interval
                low, high = float(ci.low), float(ci.high)
            p = float(wilcoxon(diff).pvalue) if diff.any() else 1.0
        sign = -1 if metric in LOWER_IS_BETTER else 1
        if np.isnan(low):
            verdict = "too few volumes"
        elif len(diff) < MIN_VOLUMES:
            verdict = f"n < {MIN_VOLUMES}: no verdict"
        elif p < 0.05 and min(sign * low, sign * high) > 0:
            verdict = f"{a} better"
        elif p < 0.05 and max(sign * low, sign * high) < 0:
            verdict = f"{b} better"
        else:
            verdict = "no clear difference"
        out.append({"dataset": dataset, "metric": metric, "method": a, "versus": b, "volumes": len(diff),
                    "mean_diff": float(diff.mean()), "ci_low": low, "ci_high": high, "wilcoxon_p": p,
                    "verdict": verdict})
    return out


def _figures(experiment: dict, methods: list[str], rows: list[dict], models: _Methods, cache: Path, out: Path) -> list[Path]:
    """The comparison figures of the experiment's ``figures`` volumes, the sampling models' mean / std / error panel,
    the per-volume gain plots and every volume's per-slice PSNR profile against the reference (``profiles/``)."""
    from misr_monai.figures import (
        busiest_slice,
        comparison_figure,
        display_plane,
        gain_figure,
        slice_profile_figure,
        uncertainty_figure,
    )

    written = []
    for spec in experiment.get("figures", []):
        dataset, volume = spec["dataset"], spec["volume"]
        if not any(r["dataset"] == dataset and r["volume"] == volume for r in rows):
            print(f"figure skipped: {volume} is not among the evaluated volumes of {dataset}")
            continue
        truth, img = load_volume(Path(experiment["datasets"][dataset]["dataset_dir"]) / volume)
        axis = next(r["axis"] for r in rows if r["dataset"] == dataset and r["volume"] == volume)
        folder = cache / dataset / _stem(volume)
        recon = {m: np.load(folder / f"{_file_name(m)}.npy") for m in methods}
        crop = np.take(truth, np.arange(recon[methods[0]].shape[axis]), axis=axis)
        index = spec.get("slice_index") or busiest_slice(crop, axis)
        for plane, where in (("slice", index), ("reformat", spec.get("reformat_index"))):
            written.append(out / f"{_stem(volume)}_{plane}.png")
            comparison_figure(crop, recon, axis, img.affine, written[-1], volume, plane, where, spec.get(f"{plane}_zoom"))
        samples = experiment.get("uncertainty_samples", 0)
        for m in methods:
            if samples < 2 or m in BASELINES or not hasattr(models[m], "predict_with_std"):
                continue
            panel = folder / f"{_file_name(m)}_samples{samples}_slice{index}.npz"
            if not panel.is_file():
                pair = np.stack([np.take(crop, index - 1, axis), np.take(crop, index + 1, axis)]).astype(np.float32)
                mean, std = models.load(m, samples).predict_with_std(pair)
                atomic_write(panel, lambda tmp: np.savez(tmp, mean=mean[0], std=std[0]))
            stats = np.load(panel)
            scale = percentile_scale_factor(crop)
            planes = [display_plane(np.expand_dims(x, axis), img.affine, axis, 0)[0] / scale
                      for x in (np.take(crop, index, axis), stats["mean"], stats["std"])]
            written.append(out / f"{_stem(volume)}_{_file_name(m)}_uncertainty.png")
            uncertainty_figure(np.clip(planes[0], 0, 1), np.clip(planes[1], 0, 1), planes[2], written[-1],
                               f"{volume}: {m}, mean and std of {samples} samples, slice {index} (axis {axis})")
    reference = experiment.get("reference", "cubic")
    for metric in ("psnr", "psnr_fg", "psnr_core"):
        written.append(out / f"gain_{metric}.png")
        gain_figure(rows, reference, written[-1], metric)
    (out / "profiles").mkdir(parents=True, exist_ok=True)
    for dataset, volume in dict.fromkeys((r["dataset"], r["volume"]) for r in rows):
        written.append(out / "profiles" / f"{dataset}_{_stem(volume)}_profile.png")
        slice_profile_figure([r for r in rows if r["dataset"] == dataset and r["volume"] == volume], reference,
                             written[-1], f"{volume}: per-slice PSNR against {reference}")
    return written


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
    methods = [m for m in dict.fromkeys(s["method"] for s in summary) if m in BASELINES or m in ORIGINAL_TABLE]
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
    if "fast_ddpm" in methods:
        best = {d: min(methods, key=lambda m: abs(mean[d, m]["tp_ratio"] - 1)) for d in datasets}
        hits = [d for d in datasets if best[d] == "fast_ddpm"]
        closest = {d: min((m for m in methods if m != "fast_ddpm"), key=lambda m: abs(mean[d, m]["tp_ratio"] - 1))
                   for d in datasets}
        evidence = "; ".join(f"{d} {mean[d, 'fast_ddpm']['tp_ratio']:.3f} against {m} {mean[d, m]['tp_ratio']:.3f}"
                             for d, m in closest.items())
        out.append(f"**The diffusion model gives the best through-plane continuity: {_verdict(hits, datasets)}** by "
                   f"`tp_ratio` (closest to 1). Per dataset, fast_ddpm against the closest other method: {evidence}. "
                   "`tp_ratio` compares the size of the second differences along the slice axis, so sampling noise "
                   "raises it as well as real detail does: read it beside fast_ddpm's MAE and the reformat figures.")
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


def compare(experiment: dict, out_dir: str | os.PathLike, command: str = "", progress: bool = True) -> dict:
    """Run (or resume) an experiment from :py:func:`load_experiment` into ``out_dir``.

    Writes ``per_volume.{csv,md}``, ``summary.{csv,md}`` (:py:data:`COMPARE_COLUMNS`), ``paired.{csv,md}``
    (:py:data:`PAIRED_COLUMNS`), PNG figures, ``report.md`` and ``report.html``; caches per-volume results in
    ``cache/``. A volume that cannot be read is said in one line and left out; an :py:class:`InputError` naming
    the volumes left out is raised once the report is written.

    Returns:
        ``{"rows", "summary", "paired", "report"}``.
    """
    start = time.perf_counter()
    out = Path(out_dir)
    cache = out / "cache"
    methods = list(dict.fromkeys(["linear", "cubic", *experiment["methods"]]))
    metrics = list(experiment.get("metrics", METRICS))
    unknown = sorted(set(metrics) - set(METRICS))
    if unknown:
        raise InputError(f"unknown metrics {unknown}; the protocol's are {', '.join(METRICS)}.")
    for name, spec in experiment["datasets"].items():
        if not Path(spec["dataset_dir"]).is_dir():
            raise InputError(f"{spec['dataset_dir']}: dataset folder of {name} not found.")
    models = _Methods(experiment)
    keep = {(f["dataset"], f["volume"]) for f in experiment.get("figures", [])}
    entries = [(name, spec, e) for name, spec in experiment["datasets"].items()
               for e in load_split(spec["datalist"], spec.get("split", "test"))]
    if progress:
        from tqdm import tqdm

        entries = tqdm(entries, desc="compare", unit="volume")
    rows, failed = [], []
    for name, spec, entry in entries:
        try:
            rows += _volume_rows(name, spec, entry, methods, models, cache, (name, entry["image"]) in keep)
        except InputError as err:  # a bad volume is left out, said in one line, and named at the end
            print_error(err)
            failed.append(f"{name}/{entry['image']}")
    if not rows:
        raise InputError(f"no volume could be read: {', '.join(failed)}.")
    costs_path = cache / "costs.json"
    costs = json.loads(costs_path.read_text()) if costs_path.is_file() else {}
    if any(m not in costs or costs[m]["settings"] != models.settings(m) for m in methods):
        costs = {m: {"cost": count_macs(models[m]), "settings": models.settings(m)} for m in methods}
        atomic_write(costs_path, lambda tmp: Path(tmp).write_text(json.dumps(costs)))
    summary = _summary(rows, {m: tuple(c["cost"]) for m, c in costs.items()})
    paired = paired_statistics(rows, methods, experiment.get("paired_metrics", ["psnr", "psnr_fg", "ssim", "mae"]),
                               experiment.get("reference", "cubic"), experiment.get("bootstrap_resamples", 10000),
                               experiment.get("seed", 0))
    for stem, table, columns in (("per_volume", rows, PER_VOLUME_COLUMNS), ("summary", summary, COMPARE_COLUMNS),
                                 ("paired", paired, PAIRED_COLUMNS)):
        write_table(table, columns, out / f"{stem}.csv")
    write_table(rows, PER_VOLUME_COLUMNS, out / "per_volume.md")
    atomic_write(out / "summary.md", lambda tmp: Path(tmp).write_text(summary_markdown(summary, metrics)))
    atomic_write(out / "paired.md", lambda tmp: Path(tmp).write_text(paired_markdown(paired)))
    figures = _figures(experiment, methods, rows, models, cache, out)
    report = _report(experiment, methods, metrics, summary, rows, paired, figures, out, command,
                     time.perf_counter() - start, {m: c["settings"] for m, c in costs.items()})
    if failed:
        raise InputError(f"{len(failed)} volumes failed and were left out of the report: {', '.join(failed)}.")
    return {"rows": rows, "summary": summary, "paired": paired, "report": report}


def _report(experiment, methods, metrics, summary, rows, paired, figures, out, command, seconds, settings) -> Path:
    computed = sum(r["seconds"] for r in rows)
    versions = ", ".join(f"{k} {v}" for k, v in _versions().items())
    weights = [[m, s["weights_sha256"] or "missing"] for m, s in settings.items() if "weights_sha256" in s]
    shown = [p for p in paired if p["dataset"] == "all"] + [p for p in paired if p["dataset"] != "all" and p["metric"] == "psnr"]
    images = "\n\n".join(f"![{p.stem}]({p.relative_to(out).as_posix()})" for p in figures)
    text = f"""# Slice interpolation: three models and two baselines compared

Command: `{command or 'misr compare'}`

- Protocol: `shared/EVALUATION.md` through `misr_monai.evaluation` (odd slices reconstructed from the even ones,
  intensities scaled by each volume's 99.5th percentile, metrics on the reconstructed slices).
- Methods: {', '.join(methods)}; seed {experiment.get('seed', 0)}, sampling models' samples per slice
  {experiment.get('samples', 1)}, precision {experiment.get('precision', 'fp32')}, device {experiment.get('device', 'cpu')}.
- Run time of this call: {seconds:.0f} s (cached results are not recomputed); reconstruction time of every result: {computed:.0f} s.
- Versions: {versions}.

## Results per dataset (mean ± std over volumes)

PSNR and SSIM in the protocol's convention; `tp_ratio` is through-plane continuity (1 ideal, below 1 too smooth,
above 1 flicker); gains are mean PSNR differences; params and multiply-adds per output voxel are counted on the
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
an unstated metric convention (intensity range, slices scored, foreground); ours follow `shared/EVALUATION.md` on
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
