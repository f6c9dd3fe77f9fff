# Copyright (c) misr_monai contributors. Licensed under the Apache License, Version 2.0.
"""``misr adapt``: a network model adapted to a series of scans of one protocol, written as a bundle folder."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import torch

from misr_monai.adaptation import AdaptingPredictor, adapt_network, scan_spacing
from misr_monai.io import InputError, check_not_input, load_volume
from misr_monai.predictors.registry import bundle_folder, load_predictor
from misr_monai.transforms.utils import find_slice_axis, voxel_spacing
from misr_monai.volume import DEFAULT_PROFILE, check_factor, slice_profile, source_kind

__all__ = ["read_scan", "adapt_bundle"]

_COPY_IGNORE = shutil.ignore_patterns("runs", "eval", "__pycache__", "*.tmp*")


def read_scan(path: str | os.PathLike, slice_thickness: float | None = None) -> tuple[np.ndarray, tuple, float]:
    """A scan's slices stacked on axis 0 ``(m, H, W)``, its spacing (slice, row, column; mm) and slice profile width
    (``slice_thickness``, else a DICOM series' ``SliceThickness``, else :py:data:`~misr_monai.volume.DEFAULT_PROFILE`).

    Raises:
        InputError: not a readable NIfTI volume or DICOM series.
    """
    path = Path(path)
    kind = source_kind(path)
    if kind == "folder":
        raise InputError(f"{path}: a folder of NIfTI files; give the files themselves (misr adapt a/*.nii.gz).")
    header_thickness = None
    if kind == "nifti":
        data, img = load_volume(path)
        affine = img.affine
    else:
        from misr_monai.dicom import read_series

        series = read_series(path)
        data, affine, header_thickness = series.volume, series.affine, series.slice_thickness
    axis = find_slice_axis(affine)
    spacing = voxel_spacing(affine)
    thickness = slice_thickness if slice_thickness is not None else header_thickness
    profile = DEFAULT_PROFILE if thickness is None else slice_profile(thickness, float(spacing[axis]))
    return np.moveaxis(data, axis, 0), scan_spacing(spacing, axis), profile


def _describe_adapted(path: Path, report: dict) -> None:
    """The adapted bundle's metadata: its description says so, and the shipped weights' ``eval_metrics`` go."""
    metadata = json.loads(path.read_text())
    metadata.pop("eval_metrics", None)
    metadata["description"] = (f"{metadata.get('description', '')} Adapted by misr adapt to {len(report['scans'])} "
                               f"scan(s) for {report['seconds']:.0f} s (docs/adaptation.json).").strip()
    path.write_text(json.dumps(metadata, indent=4) + "\n")


def adapt_bundle(scans: list[str | os.PathLike], model: str, out: str | os.PathLike, seconds: float, factor: int = 2,
                 slice_thickness: float | None = None, device: str = "cpu", overwrite: bool = False,
                 progress: bool = True) -> dict:
    """Adapt ``model`` (a network bundle) to ``scans`` for at most ``seconds`` (:py:func:`adapt_network` on every
    scan's pairs at ``factor``) and write the bundle folder ``out``: a copy of the model's bundle with the adapted
    ``models/model.pt`` (the shipped one where adapting did not gain on the held-out pairs, as the report says),
    ``models/model.ts`` exported again, ``docs/adaptation.json`` (the scans, the settings and the report) and, when
    adapted, a metadata description that says so (without the shipped weights' ``eval_metrics``). The
    folder is written beside ``out`` and renamed into place; the scans are only read.

    Returns:
        the adaptation report, with ``bundle`` (the folder written) and ``scans``.

    Raises:
        InputError: bad scans, a model without a network, or ``out`` existing without ``overwrite``.
    """
    source = bundle_folder(model)
    if source is None:
        raise InputError(f"{model}: not a bundle; misr adapt writes a bundle, so give a network model's short name or folder.")
    out = Path(out)
    if out.exists() and not overwrite:
        raise InputError(f"{out}: already exists; pass --overwrite to replace it.")
    if out.resolve() == source.resolve() or source.resolve() in out.resolve().parents:
        raise InputError(f"{out}: inside the bundle it adapts ({source}); choose a new folder.")
    for scan in scans:
        check_not_input(out, scan)
    check_factor(factor)
    adapting = AdaptingPredictor(load_predictor(model, device), seconds, progress=progress, name=model)
    groups = []
    for scan in scans:
        slices, spacing, profile = read_scan(scan, slice_thickness)
        groups += adapting.pairs(slices, spacing, factor, profile)
    network, report = adapt_network(adapting.predictor.network, groups, seconds, device, progress=progress, name=model)
    report = {**report, "scans": [str(s) for s in scans], "model": model, "factor": factor, "bundle": str(out)}
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        shutil.copytree(source, tmp, ignore=_COPY_IGNORE)
        torch.save({k: v.cpu() for k, v in network.state_dict().items()}, tmp / "models" / "model.pt")
        (tmp / "docs" / "adaptation.json").write_text(json.dumps(report, indent=4) + "\n")
        if report["adapted"]:
            _describe_adapted(tmp / "configs" / "metadata.json", report)
        from misr_monai.zoo import export_bundle

        export_bundle(tmp)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return report
