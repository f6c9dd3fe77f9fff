# Copyright (c) misr_monai contributors. Licensed under the Apache License, Version 2.0.
"""The Ignite evaluator of whole-scan inference, every bundle's ``inference.json``, and :py:func:`upsample`, the one
call for a volume on disk (``misr upsample``)."""

from __future__ import annotations

import os
from contextlib import nullcontext
from pathlib import Path

import torch
from monai.data import DataLoader, Dataset
from monai.data.utils import no_collation
from monai.engines import SupervisedEvaluator
from monai.engines.utils import IterationEvents

from misr_monai.io import InputError, SkippedInputs, print_line
from misr_monai.inferers.slice_interpolation import SliceInterpolationInferer
from misr_monai.predictors.base import SlicePredictor
from misr_monai.transforms.scans import ERROR_KEY, LoadScand, SaveUpsampledd
from misr_monai.volume import check_upsample, describe, loaded_predictor, upsampling_items

__all__ = ["ScanDataset", "VolumeEvaluator", "upsample", "volume_loader"]


class ScanDataset(Dataset):
    """The scans of ``source`` and where each goes (:py:func:`~misr_monai.volume.upsampling_items`), read by
    ``transform`` (:py:class:`~misr_monai.transforms.scans.LoadScand`); listed when first used, so that a bundle's
    properties can be checked without its input."""

    def __init__(self, source: str | os.PathLike, destination: str | os.PathLike, transform=None,
                 overwrite: bool = False, output_format: str = "dicom", std: bool = False) -> None:
        self.arguments = (source, destination, overwrite, output_format, std)
        self.transform, self._data = transform, None

    @property
    def data(self) -> list[dict]:
        if self._data is None:
            self._data = upsampling_items(*self.arguments)
        return self._data


def volume_loader(dataset: Dataset, sampler=None, num_workers: int = 0) -> DataLoader:
    """One scan per batch, uncollated (scans differ in shape), in order; optionally split by a
    ``DistributedSampler``."""
    return DataLoader(dataset, batch_size=1, shuffle=False, sampler=sampler, num_workers=num_workers,
                      collate_fn=no_collation)


class VolumeEvaluator(SupervisedEvaluator):
    """A MONAI ``SupervisedEvaluator`` over whole scans: each iteration takes the loader's items (``{"image":
    MetaTensor, "output": path}``, :py:func:`volume_loader`), upsamples each with ``inferer``
    (:py:class:`~misr_monai.inferers.SliceInterpolationInferer`) and the slice predictor ``network``, and writes it
    with ``postprocessing`` (:py:class:`~misr_monai.transforms.scans.SaveUpsampledd`). Its output is the list of
    written items (``pred``, ``output``, the inferer's ``summary``); :py:attr:`summaries` keeps each summary.

    When ``source`` is a folder of NIfTI files, a bad file is said in one line and skipped, each written file gets
    a line, and :py:meth:`run` raises one :py:class:`~misr_monai.io.InputError` naming the bad files once the others
    are written; otherwise the first bad input ends the run, and :py:meth:`run` raises it.

    Args:
        device: the device of the run (the predictor has its own).
        val_data_loader: the scans (:py:func:`volume_loader`).
        network: a slice predictor, or a function of no arguments that loads one once the first scan is read.
        inferer: the per-scan step.
        postprocessing: the writer, applied to each item (its ``check(item)``, if it has one, runs before the step).
        val_handlers: Ignite handlers (progress, metrics savers). Defaults to None.
        key_val_metric: an Ignite metric over the items, as MONAI's. Defaults to None.
        source: the input the items came from (a file, a DICOM series or a folder). Defaults to ``""``.
        keep_voxels: keep each summary's ``original`` and ``upsampled`` voxels (for a preview). Defaults to False.
    """

    def __init__(self, device: torch.device | str, val_data_loader, network, inferer, postprocessing=None,
                 val_handlers=None, key_val_metric=None, source: str | os.PathLike = "",
                 keep_voxels: bool = False) -> None:
        super().__init__(device=torch.device(device), val_data_loader=val_data_loader, network=network,
                         inferer=inferer, key_val_metric=key_val_metric, val_handlers=val_handlers, decollate=False,
                         epoch_length=1)  # counted by run(): the scans are listed when first used (ScanDataset)
        self.writer = postprocessing
        source = Path(source) if source else None
        self.folder = source is not None and source.is_dir() and not _is_series(source)
        self.source, self.keep_voxels = source, keep_voxels
        self.skipped = SkippedInputs("files") if self.folder else None
        self.summaries: list[dict] = []
        self.input_error: InputError | None = None

    def _iteration(self, engine: VolumeEvaluator, batchdata: list[dict]) -> list[dict]:
        outputs = []
        for item in batchdata:
            name = Path(str(item.get("output", ""))).name or "volume"
            try:
                with self.skipped.guard(name) if self.skipped is not None else nullcontext():
                    outputs.append(self._upsample(item))
                    if self.folder:
                        print_line(f"{name}: written to {item['output']} ({describe(outputs[-1]['summary'])})")
            except InputError as err:  # raised by run(), in its one line (Ignite would log it as a crash)
                self.input_error = err
                engine.terminate()
                break
        engine.state.output = outputs
        engine.fire_event(IterationEvents.FORWARD_COMPLETED)
        engine.fire_event(IterationEvents.MODEL_COMPLETED)
        return outputs

    def _upsample(self, item: dict) -> dict:
        """One scan: read (or its read error raised), checked against its output, upsampled, written."""
        if ERROR_KEY in item:
            raise item[ERROR_KEY]
        if hasattr(self.writer, "check"):
            self.writer.check(item, getattr(self.inferer, "std", False))
        self.network = loaded_predictor(self.network, getattr(self.inferer, "std", False))  # loaded once, when needed
        pred = self.inferer(item["image"], self.network)
        result = {**item, "pred": pred[0], "std": pred[1]} if isinstance(pred, tuple) else {**item, "pred": pred}
        summary = dict(self.inferer.summaries[0])
        summary.pop("std", None)
        if self.writer is not None:
            result = self.writer(result)
        if "output" in result:
            summary["output"] = str(result["output"])
        if "std_output" in result:
            summary["std_output"] = result["std_output"]
        if not self.keep_voxels:
            summary = {k: v for k, v in summary.items() if k not in ("original", "upsampled")}
        self.summaries.append(summary)
        return {**result, "summary": summary}

    def run(self, global_epoch: int = 1) -> None:  # type: ignore[override]
        """Every scan once; then, for a folder, the one line naming the files that failed."""
        self.summaries, self.input_error = [], None
        self.state.epoch_length = len(self.data_loader)
        super().run(global_epoch)
        if self.input_error is not None:
            raise self.input_error
        if self.skipped is not None:
            self.skipped.raise_if_any(str(self.source), len(self.data_loader.dataset))


def _is_series(folder: Path) -> bool:
    from misr_monai.dicom import is_dicom_folder

    return is_dicom_folder(folder)


def upsample(source: str | os.PathLike, destination: str | os.PathLike, predict: SlicePredictor,
             axis: int | None = None, factor: int = 2, overwrite: bool = False, std: bool = False,
             output_format: str = "dicom", model: str = "", spacing: float | None = None,
             slice_thickness: float | None = None) -> list[dict]:
    """Upsample a volume on disk through-plane by ``factor`` (or to the ``spacing`` nearest a target) and write the
    result atomically: every acquired slice kept bit-exact at its own position, ``factor - 1`` new slices per gap.

    The reader and writer follow ``source``:

    - a NIfTI file (3D, or 4D with one volume) -> the NIfTI file ``destination``: the input's dtype, header, units and
      qform/sform codes, the slice-axis affine column divided by ``factor`` and the origin unchanged, so every
      original slice keeps its world position;
    - a folder of NIfTI files -> the folder ``destination`` (created), the same file names; a bad file is said in one
      line and skipped, and an :py:class:`InputError` naming the bad files is raised once the others are written;
    - a DICOM series folder -> a new derived series in the folder ``destination``
      (:py:func:`~misr_monai.dicom.write_series`, along the slice normal), or with ``output_format="nifti"`` a NIfTI
      file.

    Inputs are only read. Every argument is checked (:py:func:`check_upsample`) before the model runs.

    Args:
        source: the input (above).
        destination: the output (above).
        predict: a slice predictor (see the module docstring), or a function of no arguments that loads one: it is
            called once the arguments are checked and the input is read, so that bad input is said before a model
            loads.
        axis: the slice axis, or None to detect it from the affine. Defaults to None.
        factor: an integer from 2 to :py:data:`MAX_FACTOR`; a model that predicts midpoints only takes 2, 4 or 8 (x2
            passes, :py:func:`check_model_factor`). Defaults to 2.
        overwrite: replace an existing output. Defaults to False.
        std: also write the calibrated per-voxel standard deviation of a sampling model's samples (``predict`` a
            :py:class:`~misr_monai.predictors.base.SamplingSlicePredictor`) as float32 NIfTI on the output's grid, at
            :py:func:`~misr_monai.io.std_path`; NIfTI output and ``factor`` 2 only. Defaults to False.
        output_format: for a DICOM series: ``"dicom"`` or ``"nifti"``. Defaults to ``"dicom"``.
        model: the model's name, in a derived DICOM series' description. Defaults to ``""``.
        spacing: a target slice spacing (mm): the factor is the one that brings each volume's spacing nearest it
            (:py:func:`factor_for_spacing`), instead of ``factor``. Defaults to None.
        slice_thickness: the acquired slice thickness (mm), for the slice profile the model is told (thickness over
            spacing, :py:func:`slice_profile`); None: a DICOM series' ``SliceThickness``, else
            :py:data:`DEFAULT_PROFILE`. Defaults to None.

    Returns:
        one summary per volume written: ``output`` (and ``std_output``), the axis, the factor, the slice profile and
        where it came from (``profile``, ``profile_source``), the input and output shapes and spacings, and
        ``original`` and ``upsampled``, each ``(voxels, affine)``.

    Raises:
        InputError: bad input, axis, factor or output path (nothing is written), or bad files in a folder.
    """
    kind = check_upsample(source, destination, axis, factor, overwrite, std, output_format, spacing, slice_thickness)
    scans = ScanDataset(source, destination, LoadScand("image", output_format), overwrite, output_format, std)
    evaluator = VolumeEvaluator("cpu", volume_loader(scans), predict,
                                SliceInterpolationInferer(factor, axis, spacing, slice_thickness, std=std),
                                SaveUpsampledd("pred", overwrite=overwrite, model=model), source=source,
                                keep_voxels=kind != "folder")
    evaluator.run()
    return evaluator.summaries
