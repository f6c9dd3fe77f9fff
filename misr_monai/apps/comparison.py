# Copyright (c) misr_monai contributors. Licensed under the Apache License, Version 2.0.
"""``misr compare``: one experiment file (``configs/comparison.yaml``) into tables, paired statistics, figures and a
report, on the evaluation protocol of :py:mod:`misr_monai.apps.evaluation` (no metric is implemented twice).

Per-volume results are cached in the results folder (``cache/DATASET/VOLUME/METHOD.json``, with the settings that
produced them), so a killed run continues where it stopped and a finished one re-renders its report in seconds.
"""

from __future__ import annotations

import itertools
import json
import os
import time
from pathlib import Path

import numpy as np

from misr_monai.apps.costs import count_macs
from misr_monai.apps.evaluation import (PER_VOLUME_COLUMNS, POSITION_COLUMNS, SUMMARY_COLUMNS, evaluate_volume,
                                        position_table, protocol_volumes, read_protocol_volume, run_protocol, summarize)
from misr_monai.apps.tables import write_table
from misr_monai.predictors.base import is_sampling, samples_of
from misr_monai.predictors.registry import (SELF_ENSEMBLE, bundle_folder, load_predictor, read_calibration,
                                            split_samples, split_sharpness, with_adapted)
from misr_monai.interpolation import BASELINES
from misr_monai.io import InputError, atomic_write, file_sha256, load_volume, print_line
from misr_monai.metrics import CALIBRATION_METRICS, METRICS, calibrated_coverage
from misr_monai.apps.report import MIN_VOLUMES, paired_markdown, summary_markdown, write_report
from misr_monai.transforms.utils import percentile_scale_factor, voxel_spacing
from misr_monai.volume import check_factor, check_model_factor

__all__ = ["load_experiment", "compare", "paired_statistics", "PAIRED_COLUMNS"]

COMPARE_COLUMNS = (*SUMMARY_COLUMNS, *(f"{m}_std" for m in METRICS if m != "psnr"), "gain_cubic_db",
                   "seconds_per_volume", "params", "macs_per_voxel")
PAIRED_COLUMNS = ("dataset", "metric", "method", "versus", "volumes", "mean_diff", "ci_low", "ci_high", "wilcoxon_p",
                  "verdict")
LOWER_IS_BETTER = ("mae", "mse")


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



def _sharpness(method: str, folder: Path) -> float | None:
    """The sharpness a refinement model runs at: the one its name gives (``srgan@0.5``), else its bundle's default;
    None for a model without the knob."""
    default = json.loads((folder / "configs" / "inference.json").read_text()).get("sharpness")
    named = split_sharpness(split_samples(method.removesuffix(SELF_ENSEMBLE))[0])[1]
    return None if default is None else float(default if named is None else named)


class _Methods:
    """Predictors loaded on first use, and each method's settings (what its cached results depend on)."""

    def __init__(self, experiment: dict) -> None:
        self.experiment = experiment
        self.loaded: dict = {}
        self.known: dict = {}
        self.calibrations: dict = {}

    def settings(self, method: str) -> dict:
        if method not in self.known:  # each bundle's weights are hashed once per run
            folder = bundle_folder(method)
            weights = None if method in BASELINES or folder is None else folder / "models" / "model.pt"
            protocol = {k: v for k, v in (("factor", self.experiment.get("factor", 2)),
                                          ("thick", self.experiment.get("thick", False))) if v not in (2, False)}
            self.known[method] = {"method": method, **protocol} if weights is None else {**protocol,
                "method": method, "weights_sha256": file_sha256(weights) if weights.is_file() else None,
                "samples": split_samples(method)[1] or self.experiment.get("samples", 1),
                "seed": self.experiment.get("seed", 0),
                "precision": self.precision(method)}
            knob = None if weights is None else _sharpness(method, folder)
            if knob is not None:  # a refinement model: its results depend on its knob, named or its config's default
                self.known[method]["sharpness"] = knob
        return self.known[method]

    def calibration(self, method: str) -> tuple[float, float] | None:
        """The sampling model's ``std_calibration`` (its bundle's ``inference.json``); not in :py:meth:`settings`, as
        a row's stored voxel draw is rescored with it (:py:func:`_volume_rows`) rather than sampled again. Read once
        per run."""
        if method not in self.calibrations:
            self.calibrations[method] = read_calibration(bundle_folder(method))
        return self.calibrations[method]

    def precision(self, method: str) -> str:
        """The experiment's ``precision``, or the one its ``precisions`` mapping gives this method's bundle."""
        return self.experiment.get("precisions", {}).get(split_samples(method)[0], self.experiment.get("precision", "fp32"))

    def __getitem__(self, method: str):
        if method not in self.loaded:
            self.loaded[method] = self.load(method, self.experiment.get("samples", 1))
        return self.loaded[method]

    def load(self, method: str, samples: int):
        exp = self.experiment
        return load_predictor(method, exp.get("device", "cpu"), exp.get("batch_size", 8), samples=samples,
                              seed=exp.get("seed", 0), precision=self.precision(method))


def _gives(predictor, factor: int) -> bool:
    """Whether ``predictor`` can give ``factor``: any factor, or a power of two by x2 passes."""
    try:
        check_model_factor(predictor, factor)
    except InputError:
        return False
    return True


def _stem(volume: str) -> str:
    return volume.replace("/", "_").split(".nii")[0]


def _file_name(method: str) -> str:
    """A method's name in file names: itself, or a bundle folder's path made flat."""
    return method.strip("/").replace("/", "_").replace(":", "_")


def _volume_rows(item: dict, methods: list[str], models: _Methods, cache: Path, keep: bool) -> list[dict]:
    """The per-volume rows of every method, from the cache or computed (and cached) through ``evaluate_volume``."""
    folder = cache / item["dataset"] / _stem(item["volume"])
    settings = {m: models.settings(m) for m in methods}

    def cached(m) -> dict | None:
        path = folder / f"{_file_name(m)}.json"
        if not path.is_file():
            return None
        row = json.loads(path.read_text())  # a result of an older protocol (fewer metrics) is recomputed
        fresh = (row["settings"] == settings[m] and all(k in row for k in (*METRICS, "slice_psnr", "position_psnr"))
                 and (not keep or (folder / f"{_file_name(m)}.npy").is_file()))
        return row if fresh else None

    rows = {m: cached(m) for m in methods}
    missing = [m for m, row in rows.items() if row is None]
    if missing:
        truth, img, axis = read_protocol_volume(item)
        folder.mkdir(parents=True, exist_ok=True)
        for m in missing:
            scores, reconstructions = evaluate_volume(truth, axis, {m: models[m]}, models.experiment.get("factor", 2),
                                                      models.experiment.get("thick", False),
                                                      spacing=voxel_spacing(img.affine))
            if keep:
                atomic_write(folder / f"{_file_name(m)}.npy", lambda tmp: np.save(tmp, reconstructions[m].astype(np.float32)))
            row = {"dataset": item["dataset"], "volume": item["volume"], "method": m, "axis": axis, **scores[m],
                   "settings": settings[m]}
            atomic_write(folder / f"{_file_name(m)}.json", lambda tmp: Path(tmp).write_text(json.dumps(row)))
            rows[m] = row
    for m, row in rows.items():  # scored with the bundle's calibration of today, on the stored draw
        if "calibration_error" in row:
            row["coverage_2std_cal"] = calibrated_coverage(row["calibration_error"], row["calibration_std"],
                                                           models.calibration(m))
    return list(rows.values())


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
    from misr_monai.apps.figures import (
        busiest_slice,
        calibration_figure,
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
        for m in dict.fromkeys(split_samples(m)[0] for m in methods):  # one panel per sampling model
            if samples < 2 or m in BASELINES or not is_sampling(models[m]):
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
    for m in methods:
        calibrated = [r for r in rows if r["method"] == m and "calibration_error" in r]
        if calibrated:
            written.append(out / f"calibration_{_file_name(m)}.png")
            samples = calibrated[0]["settings"]["samples"]
            calibration_figure(calibrated, samples, written[-1],
                               f"{m}: RMS error of the mean of {samples} samples against their std",
                               calibration=models.calibration(m))
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
    methods = with_adapted(list(dict.fromkeys(["linear", "cubic", *experiment["methods"]])), experiment.get("adapt"))
    metrics = list(experiment.get("metrics", (*METRICS, *CALIBRATION_METRICS)))
    unknown = sorted(set(metrics) - {*METRICS, *CALIBRATION_METRICS})
    if unknown:
        raise InputError(f"unknown metrics {unknown}; the protocol's are {', '.join((*METRICS, *CALIBRATION_METRICS))}.")
    for name, spec in experiment["datasets"].items():
        if not Path(spec["dataset_dir"]).is_dir():
            raise InputError(f"{spec['dataset_dir']}: dataset folder of {name} not found.")
    models = _Methods(experiment)
    factor = check_factor(experiment.get("factor", 2))
    unable = [] if factor == 2 else [m for m in methods if samples_of(models[m]) > 1 or not _gives(models[m], factor)]
    for m in unable:  # at x2 every method can, and no model is loaded before its rows are needed
        print_line(f"{m}: cannot give x{factor} (a midpoint or sampling model); left out of this comparison.")
        methods.remove(m)
    keep = {(f["dataset"], f["volume"]) for f in experiment.get("figures", [])} if factor == 2 else set()
    items = [{**item, "name": f"{name}/{item['volume']}"} for name, spec in experiment["datasets"].items()
             for item in protocol_volumes([spec["datalist"]], spec.get("split", "test"), spec["dataset_dir"], name)]
    rows, skipped = run_protocol(
        items, lambda item: _volume_rows(item, methods, models, cache, (item["dataset"], item["volume"]) in keep),
        "left out of the report", "compare" if progress else None)
    if not rows:
        raise InputError(f"no volume could be read: {', '.join(skipped.names)}.")
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
                                 ("paired", paired, PAIRED_COLUMNS),
                                 ("positions", position_table(rows, factor), POSITION_COLUMNS)):
        write_table(table, columns, out / f"{stem}.csv")
    write_table(rows, PER_VOLUME_COLUMNS, out / "per_volume.md")
    write_table(position_table(rows, factor), POSITION_COLUMNS, out / "positions.md")
    atomic_write(out / "summary.md", lambda tmp: Path(tmp).write_text(summary_markdown(summary, metrics)))
    atomic_write(out / "paired.md", lambda tmp: Path(tmp).write_text(paired_markdown(paired)))
    figures = _figures(experiment, methods, rows, models, cache, out) if factor == 2 else []
    report = write_report(experiment, methods, metrics, summary, rows, paired, figures, out, command,
                     time.perf_counter() - start, {m: c["settings"] for m, c in costs.items()})
    skipped.raise_if_any()
    return {"rows": rows, "summary": summary, "paired": paired, "report": report}
