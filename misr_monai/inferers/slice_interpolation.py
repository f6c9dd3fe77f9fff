# Copyright (c) misr_monai contributors. Licensed under the Apache License, Version 2.0.
"""The MONAI inferer of through-plane slice interpolation: one per-volume step for the bundles' evaluators, ``misr
upsample``, ``misr evaluate`` and ``misr compare``."""

from __future__ import annotations

import numpy as np
import torch
from monai.data import MetaTensor
from monai.inferers import Inferer

from misr_monai.io import InputError
from misr_monai.predictors.base import any_factor
from misr_monai.transforms.scans import SLICE_AXIS, SLICE_THICKNESS
from misr_monai.transforms.utils import find_slice_axis, voxel_spacing
from misr_monai.volume import (DEFAULT_PROFILE, cast_like, check_factor, check_model_factor, check_slice_axis,
                               factor_for_spacing, loaded_predictor, slice_profile, upsample_array, upsample_volume,
                               upsampled_affine)

__all__ = ["SliceInterpolationInferer"]


class SliceInterpolationInferer(Inferer):
    """Upsample channel-first volumes through-plane with a slice predictor: every acquired slice kept bit-exact at a
    multiple of the factor, ``factor - 1`` predicted slices per gap, clipped to the acquired slices' range, in the
    input's dtype; the result's affine has the slice column divided by the factor and the origin unchanged, so
    ``SaveImage`` (or :py:func:`~misr_monai.io.save_volume`) writes correct geometry unaided.

    The predictor (``network`` of ``__call__``, a :py:class:`~misr_monai.predictors.base.SlicePredictor`, or a
    function of no arguments that loads one once the input is checked) does the device work: its stack goes onto its
    device once, the spline and the batching of gaps are done there (:py:class:`~misr_monai.predictors.network.
    NetworkPredictor`). Precision, self-ensemble and samples are the predictor's options.

    Args:
        factor: an integer from 2 to 8. Defaults to 2.
        axis: the slice axis of the spatial dims, or None: the volume's meta
            :py:data:`~misr_monai.transforms.scans.SLICE_AXIS`, else the one the affine says. Defaults to None.
        spacing: a target slice spacing (mm): each volume's factor is the one nearest it, instead of ``factor``.
        slice_thickness: the acquired slice thickness (mm) for the slice profile the model is told (thickness over
            spacing); None: the meta's :py:data:`~misr_monai.transforms.scans.SLICE_THICKNESS`, else
            :py:data:`~misr_monai.volume.DEFAULT_PROFILE`.
        profile: the slice profile's width to tell the model whatever the thickness (the protocol's). Defaults to None.
        std: return ``(upsampled, std)``: a sampling model's calibrated std map on the same grid, zero at the
            acquired slices (factor 2). Defaults to False.
        keep_dtype: cast the result back to the input's dtype (integers rounded and clipped). Defaults to True.
        min_slices: the fewest slices a volume may have (the protocol's kept slices: 2). Defaults to 3.

    Example::

        >>> from misr_monai.interpolation import cubic_interpolate
        >>> volume = MetaTensor(torch.rand(1, 1, 8, 8, 5), affine=torch.diag(torch.tensor([1.0, 1.0, 3.0, 1.0])))
        >>> out = SliceInterpolationInferer(factor=3)(volume, cubic_interpolate)
        >>> tuple(out.shape), float(out.affine[0, 2, 2])
        ((1, 1, 8, 8, 13), 1.0)
    """

    def __init__(self, factor: int = 2, axis: int | None = None, spacing: float | None = None,
                 slice_thickness: float | None = None, profile: float | None = None, std: bool = False,
                 keep_dtype: bool = True, min_slices: int = 3) -> None:
        super().__init__()
        self.factor, self.axis, self.spacing = check_factor(factor), axis, spacing
        self.slice_thickness, self.profile, self.std, self.keep_dtype = slice_thickness, profile, std, keep_dtype
        self.min_slices = min_slices
        self.summaries: list[dict] = []

    def __call__(self, inputs: MetaTensor, network, *args, **kwargs):
        """Upsample ``inputs`` (``(B, 1, X, Y, Z)`` or ``(1, X, Y, Z)``, one channel) with the predictor ``network``.

        Returns:
            a :py:class:`~monai.data.MetaTensor` of the same layout and dtype, on the input's device, its meta the
            input's with the new affine and the step's summary (:py:meth:`upsample`); with ``std``, also the std map.
        """
        batched = inputs.ndim == 5
        volumes = inputs if batched else inputs[None]
        if volumes.shape[1] != 1:
            raise ValueError(f"one channel expected, got {volumes.shape[1]}.")
        meta = dict(getattr(inputs, "meta", {}) or {})
        affines = getattr(inputs, "affine", None)
        results, spreads, self.summaries = [], [], []
        for b in range(volumes.shape[0]):
            affine = np.eye(4) if affines is None else np.asarray((affines[b] if affines.ndim == 3 else affines).cpu())
            source = meta.get("filename_or_obj", "volume")
            source = source[b] if isinstance(source, (list, tuple)) else source
            data = volumes[b, 0]
            data = (data.as_tensor() if isinstance(data, MetaTensor) else data).detach().cpu().numpy()
            summary = self.upsample(data, affine, source, network, meta.get(SLICE_AXIS), meta.get(SLICE_THICKNESS))
            self.summaries.append(summary)
            results.append(torch.from_numpy(summary["upsampled"][0]))  # its strides as they are: no copy
            spreads.append(summary.get("std"))
        out_affine = torch.as_tensor(np.stack([s["upsampled"][1] for s in self.summaries]), dtype=torch.float64)
        out_meta = {**meta, "affine": out_affine if batched else out_affine[0], "spatial_shape": results[0].shape,
                    **{k: v for k, v in self.summaries[0].items() if k in ("factor", "axis", "profile")}}
        stacked = results[0][None] if len(results) == 1 else torch.stack(results)  # one volume: no copy
        out = MetaTensor(stacked[:, None].to(inputs.device), meta=out_meta)
        out = out if batched else out[0]
        if not self.std:
            return out
        std = torch.from_numpy(np.stack(spreads))[:, None].to(inputs.device)
        return out, MetaTensor(std if batched else std[0], meta=out_meta)

    def upsample(self, data: np.ndarray, affine: np.ndarray, source, predict, axis: int | None = None,
                 header_thickness: float | None = None) -> dict:
        """One volume ``data`` (3D, its own dtype and units) with its ``affine``; the summary of ``misr upsample``:
        the factor, slice profile and where it came from, axis, shapes, spacings, ``original`` and ``upsampled`` as
        ``(voxels, affine)`` and, with ``std``, ``"std"``.

        Raises:
            InputError: a bad axis, too few slices, or a factor the model cannot give, naming ``source``.
        """
        data = data.astype(data.dtype.newbyteorder("="), copy=False)
        if axis is not None and self.axis not in (None, axis):
            raise InputError(f"{source}: a DICOM series is upsampled along its slice normal (axis {axis}); for "
                             "another axis use --output-format nifti.")
        axis = self.axis if self.axis is not None else axis
        axis = find_slice_axis(affine) if axis is None else axis
        check_slice_axis(source, data.shape, axis, self.min_slices)
        spacings = voxel_spacing(affine)
        factor = self.factor if self.spacing is None else factor_for_spacing(float(spacings[axis]), self.spacing)
        profile, profile_source = self._profile(float(spacings[axis]), header_thickness)
        predict = loaded_predictor(predict, self.std)
        try:
            check_model_factor(predict, factor)
        except InputError as err:
            raise InputError(f"{source}: {err}") from None
        if hasattr(predict, "adapted_to"):  # fine-tuned on this volume's own slices (misr_monai.adaptation)
            from misr_monai.adaptation import scan_spacing

            thickness = self.slice_thickness if self.profile is not None else None
            predict = predict.adapted_to(np.moveaxis(data, axis, 0), scan_spacing(spacings, axis), factor, profile,
                                         thickness)
        summary = {"factor": factor, "profile": profile if any_factor(predict) else None,
                   "profile_source": profile_source}
        if self.std:
            result, spread = upsample_array(data, axis, predict, std=True)
            spread = predict.calibrated_std(spread, data)
            np.moveaxis(spread, axis, 0)[::2] = 0  # the acquired slices are certain
            summary["std"] = spread.astype(np.float32)
        else:
            result = upsample_volume(data, axis, predict, factor, profile)
        if self.keep_dtype:
            result = cast_like(result, data.dtype)
            if np.issubdtype(data.dtype, np.integer) and data.dtype.itemsize == 8:  # float64 cannot hold every int64
                np.moveaxis(result, axis, 0)[::factor] = np.moveaxis(data, axis, 0)
        out_affine = upsampled_affine(affine, axis, factor)
        return {**summary, "axis": axis, "input_shape": tuple(data.shape), "output_shape": tuple(result.shape),
                "input_spacing": tuple(spacings.tolist()), "output_spacing": tuple(voxel_spacing(out_affine).tolist()),
                "original": (data, affine), "upsampled": (result, out_affine)}

    def _profile(self, spacing: float, header_thickness: float | None) -> tuple[float, str]:
        """The slice profile's width told the model, and a phrase saying where it came from."""
        if self.profile is not None:
            return float(self.profile), "the protocol's"
        for thickness, source in ((self.slice_thickness, "--slice-thickness"), (header_thickness, "SliceThickness")):
            if thickness is not None:
                return slice_profile(thickness, spacing), f"{source} {thickness:g} mm over spacing {spacing:.3g} mm"
        return DEFAULT_PROFILE, "assumed: no slice thickness given (--slice-thickness MM)"
