# Copyright (c) misr_monai contributors. Licensed under the Apache License, Version 2.0.
"""Reading a scan into a ``MetaTensor`` and writing its upsampled volume: the pre- and postprocessing of the bundles'
inference evaluators (:py:class:`~misr_monai.engines.volumes.VolumeEvaluator`), keeping what ``misr upsample``
promises (the input's dtype and header, a derived DICOM series, atomic writes, one line per bad file)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform

from misr_monai.io import NIFTI_SUFFIXES, InputError, check_output_path, load_volume, print_line, save_volume, std_path
from misr_monai.scan_kind import dicom_texts, kind_warning, nifti_texts
from misr_monai.transforms.utils import find_slice_axis

__all__ = ["LoadScand", "SaveUpsampledd", "ERROR_KEY", "NIFTI_KEY", "SERIES_KEY", "SLICE_AXIS", "SLICE_THICKNESS"]

SLICE_AXIS = "slice_axis"
"""Meta key of a volume whose slice axis is fixed by its source (a DICOM series: its normal); else the inferer's."""
SLICE_THICKNESS = "slice_thickness"
"""Meta key of the acquired slice thickness (mm) a source's header gives (a DICOM series' ``SliceThickness``)."""

ERROR_KEY = "error"
"""Item key of the :py:class:`~misr_monai.io.InputError` a scan could not be read with (the evaluator reports it)."""
NIFTI_KEY = "nifti_image"
"""Meta key of the nibabel image whose header the output keeps."""
SERIES_KEY = "dicom_series"
"""Meta key of the :py:class:`~misr_monai.dicom.DicomSeries` a volume was read from."""


class LoadScand(MapTransform):
    """Read each key's path, a NIfTI file or a DICOM series folder, as a channel-first :py:class:`MetaTensor` in the
    scan's own dtype and units, with ``affine``, ``filename_or_obj``, the header to keep (:py:data:`NIFTI_KEY`) and for
    a series the series itself (:py:data:`SERIES_KEY`), its ``SliceThickness`` and, when it is written as DICOM, its
    normal as the slice axis. A scan whose header names a kind no shipped model was trained on gets a warning line.

    A bad scan does not raise: the item gets the :py:class:`~misr_monai.io.InputError` under :py:data:`ERROR_KEY`,
    for the evaluator to report in one line (a data loader would wrap it in a traceback).

    Args:
        keys: the path keys. Defaults to ``"image"``.
        output_format: ``"dicom"`` (a series is upsampled along its normal, to be written as a series) or
            ``"nifti"``. Defaults to ``"dicom"``.
    """

    def __init__(self, keys: KeysCollection = "image", output_format: str = "dicom") -> None:
        super().__init__(keys)
        self.output_format = output_format

    def __call__(self, data: dict) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            try:
                d[key] = self.read(Path(d[key]))
            except InputError as err:
                d[ERROR_KEY] = err
        return d

    def read(self, path: Path) -> MetaTensor:
        """The scan at ``path`` as a ``(1, X, Y, Z)`` MetaTensor.

        Raises:
            InputError: unreadable, not a volume, non-finite voxels, a bad series.
        """
        meta = {"filename_or_obj": str(path)}
        if path.is_dir():
            from misr_monai.dicom import read_series

            series = read_series(path)
            voxels, img, texts = series.volume, series.nifti(), dicom_texts(series.datasets[0])
            meta.update({SERIES_KEY: series, SLICE_THICKNESS: series.slice_thickness})
            if self.output_format == "dicom":
                meta[SLICE_AXIS] = find_slice_axis(series.affine)
        else:
            voxels, img = load_volume(path)
            texts = nifti_texts(img, path.name)
        warning = kind_warning(path, texts)
        if warning:
            print_line(f"warning: {warning}")
        voxels = np.ascontiguousarray(voxels, dtype=voxels.dtype.newbyteorder("="))
        return MetaTensor(torch.from_numpy(voxels)[None], affine=torch.as_tensor(img.affine, dtype=torch.float64),
                          meta={**meta, NIFTI_KEY: img})


class SaveUpsampledd(MapTransform):
    """Write each key's upsampled volume to the path under ``output_key``, atomically: NIfTI with the input's header
    (dtype, units, qform/sform codes) and the new affine, or, for a series read from DICOM and an output that is not
    a NIfTI name, a derived DICOM series (:py:func:`~misr_monai.dicom.write_series`). A ``std`` item beside it is
    written as float32 NIfTI at :py:func:`~misr_monai.io.std_path`.

    Args:
        keys: the upsampled volumes' keys. Defaults to ``"pred"``.
        output_key: the item key of the output path. Defaults to ``"output"``.
        overwrite: replace an existing output. Defaults to False.
        model: the model's name, in a derived series' description. Defaults to ``""``.
    """

    def __init__(self, keys: KeysCollection = "pred", output_key: str = "output", overwrite: bool = False,
                 model: str = "") -> None:
        super().__init__(keys)
        self.output_key, self.overwrite, self.model = output_key, overwrite, model

    def check(self, item: dict, std: bool = False) -> None:
        """Before any work: reject a NIfTI output (or, with ``std``, its std map) that exists without ``overwrite``."""
        output = Path(item[self.output_key])
        if output.name.endswith(NIFTI_SUFFIXES):
            for path in (output, std_path(output)) if std else (output,):
                check_output_path(path, self.overwrite, NIFTI_SUFFIXES)

    def __call__(self, data: dict) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            pred, output = d[key], Path(d[self.output_key])
            voxels, affine = pred.as_tensor().cpu().numpy()[0], np.asarray(pred.affine.cpu(), dtype=np.float64)
            series = pred.meta.get(SERIES_KEY)
            if series is not None and not output.name.endswith(NIFTI_SUFFIXES):
                from misr_monai.dicom import write_series

                factor = int(pred.meta["factor"])
                write_series(series, voxels, affine, output, factor, self.overwrite,
                             f"x{factor} through-plane slice interpolation by misr_monai ({self.model})",
                             Path(self.model).name)
                continue
            if d.get("std") is not None:
                d["std_output"] = str(std_path(output))
                save_volume(d["std_output"], d["std"].as_tensor().cpu().numpy()[0], affine, pred.meta[NIFTI_KEY],
                            self.overwrite)
            save_volume(output, voxels, affine, pred.meta[NIFTI_KEY], self.overwrite)
        return d
