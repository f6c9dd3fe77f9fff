# Copyright (c) misr_monai contributors. Licensed under the Apache License, Version 2.0.
"""The evaluation protocol over datalists: per-volume and per-dataset tables (CSV and markdown) and figures."""

from __future__ import annotations

import csv
import io
import os
import time
from pathlib import Path

import numpy as np

from misr_monai.datalist import load_split
from misr_monai.inference import SlicePredictor, check_slice_axis, upsample_array
from misr_monai.io import InputError, atomic_write, load_volume, print_error
from misr_monai.metrics import METRICS, score_reconstruction
from misr_monai.transforms.utils import find_slice_axis

__all__ = ["SUMMARY_COLUMNS", "evaluate_volume", "evaluate", "summarize", "format_value", "markdown_table", "write_table"]

SUMMARY_COLUMNS = ("dataset", "method", "volumes", "slices", "psnr", "psnr_std", "psnr_fg", "ssim", "mae", "mse",
                   "edge_ratio", "tp_ratio", "gain_db", "seconds")


def evaluate_volume(truth: np.ndarray, axis: int, predictors: dict[str, SlicePredictor]):
    """Reconstruct the odd slices of ``truth`` from its even ones with each predictor and score them.

    Returns:
        ``(scores, reconstructions)``: method -> scores (with ``seconds``), method -> reconstructed volume.
    """
    even = np.take(truth, np.arange(0, truth.shape[axis], 2), axis=axis)
    scores, reconstructions = {}, {}
    for name, predict in predictors.items():
        start = time.perf_counter()
        reconstructions[name] = upsample_array(even, axis, predict)
        seconds = time.perf_counter() - start
        scores[name] = {**score_reconstruction(truth, reconstructions[name], axis), "seconds": seconds}
    return scores, reconstructions


def _dataset_of(entry: dict, default: str) -> str:
    image = Path(entry["image"])
    return entry.get("dataset") or (image.parts[0] if len(image.parts) > 1 else default)


def evaluate(
    datalists: list[str | os.PathLike],
    split: str,
    predictors: dict[str, SlicePredictor],
    dataset_dir: str | os.PathLike,
    out_dir: str | os.PathLike | None = None,
    figures: bool = True,
    progress: bool = True,
) -> tuple[list[dict], list[dict]]:
    """Run the protocol on one split of each datalist; write tables (and figures) to ``out_dir`` when given.

    A bad volume is reported in one line on stderr and skipped; the tables hold the others, and an
    :py:class:`InputError` listing the bad ones is raised at the end. If the run stops on any other error or an
    interruption, the figures already written by this call are removed.

    Returns:
        ``(per_volume_rows, summary_rows)``.
    """
    written: list[Path] = []
    try:
        rows, summary, failed = _evaluate(datalists, split, predictors, dataset_dir, out_dir, figures, progress, written)
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise
    if failed:
        raise InputError(f"{len(failed)} volumes failed and were left out of the tables: {', '.join(failed)}.")
    return rows, summary


def _evaluate(datalists, split, predictors, dataset_dir, out_dir, figures, progress, written):
    entries = [(Path(dl).stem, e) for dl in datalists for e in load_split(dl, split)]
    if progress:
        from tqdm import tqdm

        entries = tqdm(entries, desc=f"evaluate {split}", unit="volume")
    rows, failed = [], []
    for default, entry in entries:
        path = Path(dataset_dir) / entry["image"]
        try:
            truth, img = load_volume(path)
            axis = entry.get("axis", find_slice_axis(img.affine))
            check_slice_axis(path, truth.shape, axis)
        except InputError as err:
            print_error(err)
            failed.append(entry["image"])
            continue
        scores, reconstructions = evaluate_volume(truth, axis, predictors)
        volume = entry["image"]
        dataset = _dataset_of(entry, default)
        rows += [{"dataset": dataset, "volume": volume, "method": m, "axis": axis, **s} for m, s in scores.items()]
        if figures and out_dir is not None:
            from misr_monai.figures import comparison_figure

            crop = np.take(truth, np.arange(next(iter(reconstructions.values())).shape[axis]), axis=axis)
            stem = volume.replace("/", "_").split(".nii")[0]
            for plane in ("slice", "reformat"):
                written.append(Path(out_dir) / f"{stem}_{plane}.png")
                comparison_figure(crop, reconstructions, axis, img.affine, written[-1], volume, plane)
    summary = summarize(rows)
    if out_dir is not None:
        columns = ("dataset", "volume", "method", "axis", "slices", *METRICS, "seconds")
        for name, table, cols in (("per_volume", rows, columns), ("summary", summary, SUMMARY_COLUMNS)):
            write_table(table, cols, Path(out_dir) / f"{name}.csv")
            write_table(table, cols, Path(out_dir) / f"{name}.md")
    return rows, summary, failed


def summarize(rows: list[dict]) -> list[dict]:
    """Per dataset and method: means over volumes (and the PSNR's standard deviation, ddof 1), gain over ``linear``."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        groups.setdefault((row["dataset"], row["method"]), []).append(row)
    summary = []
    for (dataset, method), group in groups.items():
        psnr = np.array([r["psnr"] for r in group])
        item = {"dataset": dataset, "method": method, "volumes": len(group), "slices": sum(r["slices"] for r in group)}
        item.update({m: float(np.nanmean([r[m] for r in group])) for m in METRICS})
        item["psnr_std"] = float(np.std(psnr, ddof=1)) if len(group) > 1 else float("nan")
        item["seconds"] = float(sum(r["seconds"] for r in group))
        summary.append(item)
    for item in summary:
        linear = [s["psnr"] for s in summary if s["dataset"] == item["dataset"] and s["method"] == "linear"]
        item["gain_db"] = item["psnr"] - linear[0] if linear else float("nan")
    return summary


def format_value(value) -> str:
    """A table cell: floats rounded to 2 decimals from 10 up, 4 below, scientific under 0.01."""
    if isinstance(value, float):
        return f"{value:.2f}" if abs(value) >= 10 else f"{value:.4f}" if abs(value) >= 0.01 or value == 0 else f"{value:.2e}"
    return str(value)


def markdown_table(header: list[str], lines: list[list[str]]) -> str:
    """A markdown table of already formatted cells."""
    text = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(text + ["| " + " | ".join(line) + " |" for line in lines]) + "\n"


def write_table(rows: list[dict], columns, path: str | os.PathLike) -> None:
    """Write rows as CSV (full precision) or a markdown table (rounded), chosen by the file's suffix, atomically."""
    path = Path(path)
    if path.suffix == ".csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        text = buffer.getvalue()
    else:
        text = markdown_table(list(columns), [[format_value(r.get(c, "")) for c in columns] for r in rows])
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))
