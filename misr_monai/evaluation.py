# Copyright (c) misr_monai contributors. Licensed under the Apache License, Version 2.0.
"""The evaluation protocol over datalists: per-volume and per-dataset tables (CSV and markdown) and figures."""

from __future__ import annotations

import csv
import io
import os
import time
from pathlib import Path

import numpy as np
from ignite.engine import Engine
from monai.data import Dataset

from misr_monai.datalist import load_split
from misr_monai.interpolation import SlicePredictor
from misr_monai.io import SkippedInputs, atomic_write, load_volume
from misr_monai.volume import check_slice_axis, upsample_array
from misr_monai.metrics import CALIBRATION_METRICS, METRICS, pool_calibration, score_calibration, score_reconstruction
from misr_monai.transforms.utils import find_slice_axis

__all__ = ["SUMMARY_COLUMNS", "evaluate_volume", "sampled", "dataset_of", "protocol_dataset", "ProtocolEvaluator", "evaluate", "summarize", "format_value", "markdown_table", "write_table"]

SUMMARY_COLUMNS = ("dataset", "method", "volumes", "slices", "psnr", "psnr_std", "psnr_fg", "ssim", "mae", "mse",
                   "edge_ratio", "psnr_vol", "psnr_core", "tp_ratio", "sharpness", *CALIBRATION_METRICS, "gain_db",
                   "seconds")


def evaluate_volume(truth: np.ndarray, axis: int, predictors: dict[str, SlicePredictor]):
    """Reconstruct the odd slices of ``truth`` from its even ones with each predictor and score them; a sampling
    model with K > 1 samples per slice is also scored for calibration (:py:func:`~misr_monai.metrics.score_calibration`).

    Returns:
        ``(scores, reconstructions)``: method -> scores (with ``seconds``), method -> reconstructed volume.
    """
    even = np.take(truth, np.arange(0, truth.shape[axis], 2), axis=axis)
    scores, reconstructions = {}, {}
    for name, predict in predictors.items():
        start = time.perf_counter()
        std = None
        if sampled(predict):
            reconstructions[name], std = upsample_array(even, axis, predict, std=True)
        else:
            reconstructions[name] = upsample_array(even, axis, predict)
        seconds = time.perf_counter() - start
        scores[name] = {**score_reconstruction(truth, reconstructions[name], axis), "seconds": seconds}
        if std is not None:
            scores[name].update(score_calibration(truth, reconstructions[name], std, axis,
                                                  calibration=predict.std_calibration))
    return scores, reconstructions


def sampled(predictor: SlicePredictor) -> bool:
    """Whether ``predictor`` is a sampling model that draws more than one sample per slice."""
    return hasattr(predictor, "predict_with_std") and predictor.sampler.num_samples > 1


def dataset_of(entry: dict, default: str) -> str:
    """The dataset a datalist entry belongs to: its ``dataset`` key, else the first folder of its image path, else
    ``default`` (the datalist's name)."""
    image = Path(entry["image"])
    return entry.get("dataset") or (image.parts[0] if len(image.parts) > 1 else default)


def protocol_dataset(datalists: list[str | os.PathLike], split: str, dataset_dir: str | os.PathLike) -> Dataset:
    """The volumes of one split of each datalist, as a MONAI ``Dataset`` of ``{"image": path, "volume": its datalist
    path, "dataset": its dataset name}`` (and ``"axis"`` where the datalist gives one)."""
    return Dataset([{**e, "image": str(Path(dataset_dir) / e["image"]), "volume": e["image"],
                     "dataset": dataset_of(e, Path(dl).stem)} for dl in datalists for e in load_split(dl, split)])


class ProtocolEvaluator(Engine):
    """An Ignite engine that runs the evaluation protocol on each volume of ``dataset``: the bundles' ``evaluator``
    in ``evaluate.json``.

    Each iteration reconstructs the odd slices of one volume from its even ones with every predictor and scores them
    (:py:func:`evaluate_volume`); ``engine.state.output`` is that volume's rows. :py:meth:`run` then writes
    ``per_volume.{csv,md}``, ``summary.{csv,md}`` and, with ``figures``, a slice, a reformat and a per-slice PSNR
    profile against ``cubic`` (:py:func:`~misr_monai.figures.slice_profile_figure`) PNG per volume to ``output_dir``. A bad volume is said in one line on stderr and left out; the others are evaluated, and an
    :py:class:`InputError` naming the bad ones is raised at the end. If the run stops on any other error or an
    interruption, the figures it wrote are removed.

    Args:
        dataset: items of :py:func:`protocol_dataset`.
        predictors: method name -> slice predictor.
        output_dir: folder for tables and figures, or None for none. Defaults to None.
        figures: also draw figures. Defaults to True.
        progress: show a progress bar. Defaults to True.
    """

    def __init__(self, dataset, predictors: dict[str, SlicePredictor], output_dir: str | os.PathLike | None = None,
                 figures: bool = True, progress: bool = True) -> None:
        super().__init__(self._iteration)
        self.dataset, self.predictors, self.figures = dataset, predictors, figures
        self.output_dir = None if output_dir is None else Path(output_dir)
        self.rows: list[dict] = []
        self.skipped = SkippedInputs("volumes", "left out of the tables")
        self.written: list[Path] = []
        if progress:
            from ignite.handlers import ProgressBar

            ProgressBar(persist=True, desc="evaluate").attach(self)

    def _iteration(self, engine: Engine, item: dict) -> list[dict]:
        rows: list[dict] = []
        with self.skipped.guard(item["volume"]):
            truth, img = load_volume(item["image"])
            axis = item.get("axis", find_slice_axis(img.affine))
            check_slice_axis(item["image"], truth.shape, axis)
            rows = self._score(item, truth, img, axis)
        return rows

    def _score(self, item: dict, truth: np.ndarray, img, axis: int) -> list[dict]:
        scores, reconstructions = evaluate_volume(truth, axis, self.predictors)
        rows = [{"dataset": item["dataset"], "volume": item["volume"], "method": m, "axis": axis, **s}
                for m, s in scores.items()]
        self.rows += rows
        if self.figures and self.output_dir is not None:
            from misr_monai.figures import comparison_figure, slice_profile_figure

            crop = np.take(truth, np.arange(next(iter(reconstructions.values())).shape[axis]), axis=axis)
            stem = item["volume"].replace("/", "_").split(".nii")[0]
            for plane in ("slice", "reformat"):
                self.written.append(self.output_dir / f"{stem}_{plane}.png")
                comparison_figure(crop, reconstructions, axis, img.affine, self.written[-1], item["volume"], plane)
            if "cubic" in scores and len(scores) > 1:
                self.written.append(self.output_dir / f"{stem}_profile.png")
                slice_profile_figure(rows, "cubic", self.written[-1], f"{item['volume']}: per-slice PSNR against cubic")
        return rows

    def run(self) -> tuple[list[dict], list[dict]]:  # type: ignore[override]
        """Evaluate every volume and write the tables; return ``(per_volume_rows, summary_rows)``."""
        self.rows, self.written = [], []
        self.skipped = SkippedInputs("volumes", "left out of the tables")
        try:
            super().run([self.dataset[i] for i in range(len(self.dataset))], max_epochs=1)
        except BaseException:
            for path in self.written:
                path.unlink(missing_ok=True)
            raise
        summary = summarize(self.rows)
        if self.output_dir is not None:
            columns = ("dataset", "volume", "method", "axis", "slices", *METRICS, *CALIBRATION_METRICS, "seconds")
            for name, table, cols in (("per_volume", self.rows, columns), ("summary", summary, SUMMARY_COLUMNS)):
                write_table(table, cols, self.output_dir / f"{name}.csv")
                write_table(table, cols, self.output_dir / f"{name}.md")
        self.skipped.raise_if_any()
        return self.rows, summary


def evaluate(
    datalists: list[str | os.PathLike],
    split: str,
    predictors: dict[str, SlicePredictor],
    dataset_dir: str | os.PathLike,
    out_dir: str | os.PathLike | None = None,
    figures: bool = True,
    progress: bool = True,
) -> tuple[list[dict], list[dict]]:
    """Run the protocol on one split of each datalist (:py:class:`ProtocolEvaluator`); write tables (and figures) to
    ``out_dir`` when given.

    Returns:
        ``(per_volume_rows, summary_rows)``.

    Raises:
        InputError: a missing datalist or split, or volumes that failed (each said in its line; the rest evaluated).
    """
    return ProtocolEvaluator(protocol_dataset(datalists, split, dataset_dir), predictors, out_dir, figures, progress).run()


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
        calibrated = [r for r in group if "calibration_voxels" in r]
        item.update(pool_calibration(calibrated) if calibrated else dict.fromkeys(CALIBRATION_METRICS, float("nan")))
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
