# Copyright (c) misr_monai contributors. Licensed under the Apache License, Version 2.0.
"""The evaluation protocol over datalists: one per-volume runner (:py:func:`run_protocol`) that ``misr evaluate``,
``compare``, ``uncertainty`` and ``calibrate`` configure, and per-volume and per-dataset tables (CSV and markdown)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from ignite.metrics import Metric
from monai.engines import SupervisedEvaluator

from misr_monai.datalist import load_split
from misr_monai.predictors.base import SlicePredictor, samples_of
from misr_monai.apps.tables import write_table
from misr_monai.interpolation import thick_slices
from misr_monai.io import InputError, SkippedInputs, load_volume
from misr_monai.inferers.slice_interpolation import SliceInterpolationInferer
from misr_monai.volume import check_slice_axis, upsample_array
from misr_monai.metrics import CALIBRATION_METRICS, METRICS, pool_calibration, score_calibration, score_reconstruction
from misr_monai.transforms.utils import find_slice_axis, voxel_spacing

__all__ = ["PER_VOLUME_COLUMNS", "SUMMARY_COLUMNS", "POSITION_COLUMNS", "evaluate_volume", "protocol_truth",
           "position_table", "dataset_of", "protocol_volumes",
           "read_protocol_volume", "run_protocol", "evaluate", "summarize", "ProtocolEvaluator", "ProtocolTables",
           "RowMean", "protocol_loader", "score_volume", "protocol_predictors"]

PER_VOLUME_COLUMNS = ("dataset", "volume", "method", "axis", "slices", *METRICS, *CALIBRATION_METRICS, "seconds")
SUMMARY_COLUMNS = ("dataset", "method", "volumes", "slices", "psnr", "psnr_std", "psnr_fg", "ssim", "mae", "mse",
                   "edge_ratio", "psnr_vol", "psnr_core", "tp_ratio", "sharpness", "hf_ratio", *CALIBRATION_METRICS, "gain_db",
                   "seconds")


POSITION_COLUMNS = ("dataset", "method", "factor", "position", "psnr", "volumes")


def position_table(rows: list[dict], factor: int) -> list[dict]:
    """Per dataset, method and position ``t = j / factor``: the mean over volumes of the per-slice PSNR of the slices
    at that position (the middle positions are the hardest)."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        groups.setdefault((row["dataset"], row["method"]), []).append(row)
    return [{"dataset": dataset, "method": method, "factor": factor, "position": f"{j}/{factor}",
             "psnr": float(np.nanmean([r["position_psnr"][j - 1] for r in group])), "volumes": len(group)}
            for (dataset, method), group in groups.items() for j in range(1, factor)]


def protocol_truth(truth: np.ndarray, axis: int, factor: int = 2, thick: float = 0.0) -> np.ndarray:
    """The ground truth the protocol scores against: ``truth``, or with ``thick`` the thick-slice simulation of
    ``../shared/EVALUATION.md`` (filtered along ``axis`` by a box ``factor`` slices wide, float32; a number w in (0, 1)
    makes the box ``w factor`` slices wide: slices thinner than their spacing)."""
    return thick_slices(truth, axis, float(thick) * factor) if thick else truth


def evaluate_volume(truth: np.ndarray, axis: int, predictors: dict[str, SlicePredictor], factor: int = 2,
                    thick: float = 0.0, profile: float | None = None, spacing=None):
    """Reconstruct ``truth`` from every ``factor``-th slice (0, F, 2F...) with each predictor and score the others; a
    sampling model with K > 1 samples per slice is also scored for calibration
    (:py:func:`~misr_monai.metrics.score_calibration`).

    With ``thick`` (True or a width w), ``truth`` is first :py:func:`protocol_truth`'s thick-slice simulation. The
    predictors are told the slice profile ``profile`` (default: the simulation's, ``float(thick)``); a model that
    cannot give ``factor`` raises an :py:class:`~misr_monai.io.InputError`. A predictor that adapts to the scan
    (:py:class:`~misr_monai.adaptation.AdaptingPredictor`) is adapted on the kept slices only, as ``misr upsample``
    would be on them: ``spacing``, the volume's voxel spacing (mm), gives it their geometry (slices as thick as the
    volume's spacing, or the simulation's box).

    Returns:
        ``(scores, reconstructions)``: method -> scores (with ``seconds``), method -> reconstructed volume.
    """
    truth = protocol_truth(truth, axis, factor, thick)
    profile = float(thick) if profile is None else profile
    kept = np.take(truth, np.arange(0, truth.shape[axis], factor), axis=axis)
    kept_affine = np.diag([*((1.0, 1.0, 1.0) if spacing is None else spacing), 1.0]).astype(np.float64)
    kept_affine[axis, axis] *= factor
    # the adapting model is told the kept slices' thickness: as thick as the volume's spacing, or the simulation's box
    thickness = None if spacing is None else max(1.0, float(thick) * factor) * spacing[axis]
    inferer = SliceInterpolationInferer(factor, axis, slice_thickness=thickness, profile=profile, keep_dtype=False,
                                        min_slices=2)
    scores, reconstructions = {}, {}
    for name, predict in predictors.items():
        start = time.perf_counter()
        std = None
        if samples_of(predict) > 1:
            if factor != 2:
                raise InputError(f"{name}: the mean of several samples is scored at --factor 2 only.")
            reconstructions[name], std = upsample_array(kept, axis, predict, std=True)
        else:
            reconstructions[name] = inferer.upsample(kept, kept_affine, name, predict)["upsampled"][0]
        seconds = time.perf_counter() - start
        scores[name] = {**score_reconstruction(truth, reconstructions[name], axis, factor), "seconds": seconds}
        if std is not None:
            scores[name].update(score_calibration(truth, reconstructions[name], std, axis,
                                                  calibration=predict.std_calibration))
    return scores, reconstructions


def protocol_predictors(methods: list[str], device: str, batch_size: int = 8, samples: int = 1, seed: int | None = None,
                        precision: str = "fp32", self_ensemble: bool = False, sharpness: float | None = None,
                        factor: int = 2, adapt: float | None = None) -> dict[str, SlicePredictor]:
    """The predictors ``misr evaluate`` scores: ``methods`` with linear and cubic always first, each network model
    also adapted for ``adapt`` seconds where given (:py:func:`~misr_monai.predictors.registry.with_adapted`), each
    checked against ``factor``.

    Raises:
        InputError: an unknown model, a factor it cannot give, several samples at a factor other than 2.
    """
    from misr_monai.interpolation import BASELINES
    from misr_monai.predictors.registry import load_predictor, with_adapted
    from misr_monai.volume import check_factor, check_model_factor

    methods = [m for m in methods if m]
    for required in ("cubic", "linear"):
        if required not in methods:
            methods.insert(0, required)
    predictors = {m: load_predictor(m, device, batch_size, samples=samples, seed=seed, precision=precision,
                                    self_ensemble=self_ensemble and m not in BASELINES,
                                    sharpness=sharpness if m not in BASELINES else None)
                  for m in with_adapted(methods, adapt)}
    for m, predict in predictors.items():
        check_model_factor(predict, check_factor(factor), m)
        if factor != 2 and samples_of(predict) > 1:
            raise InputError(f"{m}: the mean of several samples (--samples) is scored at --factor 2 only.")
    return predictors


def dataset_of(entry: dict, default: str) -> str:
    """The dataset a datalist entry belongs to: its ``dataset`` key, else the first folder of its image path, else
    ``default`` (the datalist's name)."""
    image = Path(entry["image"])
    return entry.get("dataset") or (image.parts[0] if len(image.parts) > 1 else default)


def protocol_volumes(datalists: list[str | os.PathLike], split: str, dataset_dir: str | os.PathLike,
                     dataset: str | None = None) -> list[dict]:
    """The volumes of one split of each datalist: ``{"image": path, "volume": its datalist path, "dataset": its
    dataset name}`` (``dataset``, else :py:func:`dataset_of`), with ``"axis"`` where the datalist gives one."""
    return [{**e, "image": str(Path(dataset_dir) / e["image"]), "volume": e["image"],
             "dataset": dataset or dataset_of(e, Path(dl).stem)} for dl in datalists for e in load_split(dl, split)]


def read_protocol_volume(item: dict) -> tuple[np.ndarray, object, int]:
    """A protocol volume's voxels, nibabel image and slice axis (the datalist's, else the affine's), checked.

    Raises:
        InputError: unreadable, or too few slices along the axis.
    """
    truth, img = load_volume(item["image"])
    axis = item.get("axis", find_slice_axis(img.affine))
    check_slice_axis(item["image"], truth.shape, axis)
    return truth, img, axis


def run_protocol(items: list[dict], score: Callable[[dict], list[dict]], consequence: str = "left out of the tables",
                 progress: str | None = None) -> tuple[list[dict], SkippedInputs]:
    """The per-volume loop of every protocol run (``misr evaluate``, ``compare``, ``uncertainty``, ``calibrate``):
    ``score(item)`` gives each volume's rows; a volume that raises an :py:class:`InputError` is said in one line, by
    the item's ``name`` (default: its ``volume``), and left out (``consequence``).

    Args:
        items: volumes of :py:func:`protocol_volumes`.
        score: one volume's rows (reading it with :py:func:`read_protocol_volume`, or from a cache).
        consequence: what becomes of a bad volume, for the summary line. Defaults to ``"left out of the tables"``.
        progress: a progress bar's title, or None for none. Defaults to None.

    Returns:
        ``(rows, skipped)``: the rows in order, and the bad volumes (``skipped.raise_if_any()`` once the caller has
        written what it writes).
    """
    skipped = SkippedInputs("volumes", consequence)
    if progress:
        from tqdm import tqdm

        items = tqdm(items, desc=progress, unit="volume")
    rows: list[dict] = []
    for item in items:
        with skipped.guard(item.get("name", item["volume"])):
            rows += score(item)
    return rows, skipped


class ProtocolEvaluator(SupervisedEvaluator):
    """The evaluation protocol as a MONAI ``SupervisedEvaluator``: each item a datalist volume
    (:py:func:`protocol_volumes`, one per batch, uncollated), reconstructed from every ``factor``-th slice by each
    predictor of ``network`` (a dict: name -> slice predictor) and scored on the others (:py:func:`score_volume`). The
    output of an iteration is its rows; :py:attr:`rows` keeps them all, in the datalist's order, gathered from every
    process of a distributed run. A bad volume is said in one line and left out; :py:meth:`run` raises one line naming
    them once the tables are written (``val_handlers``: :py:class:`ProtocolTables`).

    Args:
        device: the run's device (each predictor has its own).
        val_data_loader: the volumes.
        network: name -> slice predictor.
        factor, thick, profile: the protocol (:py:func:`evaluate_volume`).
        out_dir: where figures go (with ``figures``), or None. Defaults to None.
        figures: draw each volume's figures (factor 2). Defaults to False.
        key_val_metric, val_handlers: as MONAI's (:py:class:`RowMean`, :py:class:`ProtocolTables`).
    """

    def __init__(self, device, val_data_loader, network: dict[str, SlicePredictor], factor: int = 2,
                 thick: float = 0.0, profile: float | None = None, out_dir: str | os.PathLike | None = None,
                 figures: bool = False, key_val_metric: dict | None = None, val_handlers=None) -> None:
        import torch

        super().__init__(device=torch.device(device), val_data_loader=val_data_loader, network=network,
                         key_val_metric=key_val_metric, val_handlers=val_handlers, decollate=False)
        self.factor, self.thick, self.profile = factor, thick, profile
        self.out_dir, self.figures = (None if out_dir is None else Path(out_dir)), figures
        self.rows: list[dict] = []
        self.written: list[Path] = []
        self.skipped = SkippedInputs("volumes", "left out of the tables")

    def _iteration(self, engine: ProtocolEvaluator, batchdata: list[dict]) -> list[dict]:
        from monai.engines.utils import IterationEvents

        rows: list[dict] = []
        for item in batchdata:
            with self.skipped.guard(item.get("name", item["volume"])):
                item_rows, written = score_volume(item, self.network, self.factor, self.thick, self.profile,
                                                  self.out_dir if self.figures else None)
                rows += [{**row, "index": item.get("index", 0)} for row in item_rows]
                self.written += written
        self.rows += rows
        engine.state.output = rows
        engine.fire_event(IterationEvents.FORWARD_COMPLETED)
        engine.fire_event(IterationEvents.MODEL_COMPLETED)
        return rows

    def run(self, global_epoch: int = 1) -> None:  # type: ignore[override]
        """Every volume once (each by one process); the rows of all processes in order; figures removed if the run
        stops on anything but a bad volume; then the one line naming the bad volumes."""
        self.rows, self.written = [], []
        try:
            super().run(global_epoch)
        except BaseException:
            for path in self.written:
                path.unlink(missing_ok=True)
            raise
        self.skipped.raise_if_any()

    def all_rows(self) -> list[dict]:
        """Every process's rows, in the datalist's order, without their ``index``."""
        rows = _gathered(self.rows)
        rows.sort(key=lambda row: row["index"])
        return [{k: v for k, v in row.items() if k != "index"} for row in rows]


def _gathered(items: list) -> list:
    """``items`` of every process of a distributed run, rank after rank (only this process's outside one)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return list(items)
    parts: list = [None] * dist.get_world_size()
    dist.all_gather_object(parts, list(items))
    return [item for part in parts for item in part]


class RowMean(Metric):
    """An Ignite metric of the protocol: the mean of one column (``psnr``) of one method's per-volume rows, over every
    process; a key metric for :py:class:`ProtocolEvaluator` (``evaluate.json``'s ``key_metric``)."""

    def __init__(self, column: str, method: str, output_transform=lambda rows: rows) -> None:
        self.column, self.method = column, method
        super().__init__(output_transform=output_transform)

    def reset(self) -> None:
        self.values: list[tuple[int, float]] = []

    def update(self, rows: list[dict]) -> None:
        self.values += [(r.get("index", 0), float(r[self.column])) for r in rows if r["method"] == self.method]

    def compute(self) -> float:
        values = [v for _, v in sorted(_gathered(self.values))]  # the datalist's order: the same sum on any split
        return float(np.mean(values)) if values else float("nan")


class ProtocolTables:
    """An Ignite handler: when a :py:class:`ProtocolEvaluator` completes, the first process writes
    ``per_volume.{csv,md}``, ``summary.{csv,md}`` and ``positions.{csv,md}`` of every process's rows to
    ``out_dir``."""

    def __init__(self, out_dir: str | os.PathLike) -> None:
        self.out_dir = Path(out_dir)

    def attach(self, engine: ProtocolEvaluator) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.COMPLETED, self)

    def __call__(self, engine: ProtocolEvaluator) -> None:
        import torch.distributed as dist

        rows = engine.all_rows()
        if dist.is_available() and dist.is_initialized() and dist.get_rank() > 0:
            return
        tables = (("per_volume", rows, PER_VOLUME_COLUMNS), ("summary", summarize(rows), SUMMARY_COLUMNS),
                  ("positions", position_table(rows, engine.factor), POSITION_COLUMNS))
        for name, table, columns in tables:
            write_table(table, columns, self.out_dir / f"{name}.csv")
            write_table(table, columns, self.out_dir / f"{name}.md")


def protocol_loader(items: list[dict], sampler=None):
    """The protocol volumes ``items`` (:py:func:`protocol_volumes`), numbered in order, one per batch (uncollated),
    optionally split by ``sampler`` (a ``DistributedSampler`` over ``items``)."""
    from monai.data import DataLoader
    from monai.data.utils import no_collation

    items = [{**item, "index": i} for i, item in enumerate(items)]
    return DataLoader(items, batch_size=1, shuffle=False, sampler=sampler, collate_fn=no_collation)


def score_volume(item: dict, predictors: dict[str, SlicePredictor], factor: int = 2, thick: float = 0.0,
                 profile: float | None = None, out: Path | None = None) -> tuple[list[dict], list[Path]]:
    """One protocol volume's rows (:py:func:`evaluate_volume`) and, with ``out`` at factor 2, its figures."""
    truth, img, axis = read_protocol_volume(item)
    scores, reconstructions = evaluate_volume(truth, axis, predictors, factor, thick, profile, voxel_spacing(img.affine))
    truth = protocol_truth(truth, axis, factor, thick)
    rows = [{"dataset": item["dataset"], "volume": item["volume"], "method": m, "axis": axis, **s}
            for m, s in scores.items()]
    written = []
    if out is not None and factor == 2:  # the figures show the x2 task
        written = _volume_figures(item["volume"], truth, img, axis, reconstructions, rows, out)
    return rows, written


def evaluate(
    datalists: list[str | os.PathLike],
    split: str,
    predictors: dict[str, SlicePredictor],
    dataset_dir: str | os.PathLike,
    out_dir: str | os.PathLike | None = None,
    figures: bool = True,
    progress: bool = True,
    factor: int = 2,
    thick: float = 0.0,
    profile: float | None = None,
) -> tuple[list[dict], list[dict]]:
    """Run the protocol on one split of each datalist with :py:class:`ProtocolEvaluator` (as the bundles'
    ``evaluate.json``): each volume reconstructed from every ``factor``-th slice by every predictor and scored on the
    others (:py:func:`evaluate_volume`; ``thick``: its thick-slice variant, True or a profile width w; ``profile``:
    the width the models are told, by default the simulation's).

    With ``out_dir``, writes ``per_volume.{csv,md}``, ``summary.{csv,md}``, ``positions.{csv,md}`` (PSNR per position
    in the gap, :py:func:`position_table`) and, with ``figures`` at factor 2, a slice, a reformat
    and a per-slice PSNR profile against ``cubic`` (:py:func:`~misr_monai.apps.figures.slice_profile_figure`) PNG per
    volume; if the run stops on an error other than a bad volume, or an interruption, the figures it wrote are
    removed.

    Returns:
        ``(per_volume_rows, summary_rows)``.

    Raises:
        InputError: a missing datalist or split, or volumes that failed (each said in its line; the rest evaluated).
    """
    from ignite.handlers import ProgressBar

    handlers = [] if out_dir is None else [ProtocolTables(out_dir)]
    handlers += [ProgressBar(desc="evaluate")] if progress else []
    evaluator = ProtocolEvaluator("cpu", protocol_loader(protocol_volumes(datalists, split, dataset_dir)), predictors,
                                  factor, thick, profile, out_dir, figures, val_handlers=handlers)
    evaluator.run()
    rows = evaluator.all_rows()
    return rows, summarize(rows)


def _volume_figures(volume: str, truth: np.ndarray, img, axis: int, reconstructions: dict[str, np.ndarray],
                    rows: list[dict], out: Path) -> list[Path]:
    """A volume's slice and reformat comparisons, and its per-slice PSNR profile against ``cubic``."""
    from misr_monai.apps.figures import comparison_figure, slice_profile_figure

    written = []
    crop = np.take(truth, np.arange(next(iter(reconstructions.values())).shape[axis]), axis=axis)
    stem = volume.replace("/", "_").split(".nii")[0]
    for plane in ("slice", "reformat"):
        written.append(out / f"{stem}_{plane}.png")
        comparison_figure(crop, reconstructions, axis, img.affine, written[-1], volume, plane)
    if "cubic" in reconstructions and len(reconstructions) > 1:
        written.append(out / f"{stem}_profile.png")
        slice_profile_figure(rows, "cubic", written[-1], f"{volume}: per-slice PSNR against cubic")
    return written


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
