# Copyright (c) misr_monai contributors. Licensed under the Apache License, Version 2.0.
"""Whole-volume x2 through-plane upsampling: one path for ``misr upsample``, ``misr evaluate`` and the bundles.

A *slice predictor* maps the ``m`` original slices of a volume, stacked on axis 0 as ``(m, H, W)`` floats in the
volume's own intensity units, to the ``m - 1`` slices between them. The baselines are predictors, and
:py:class:`NetworkPredictor` turns any network with the contract ``(B, 2, H, W) -> (B, 1, H, W)`` into one.
"""

from __future__ import annotations

import math
import os
import pickle
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from monai.inferers import Inferer

from misr_monai.interpolation import BASELINES, SlicePredictor, cubic_interpolate, linear_interpolate
from misr_monai.io import InputError, check_output_path, load_volume, save_volume
from misr_monai.transforms.utils import find_slice_axis, percentile_scale_factor, reflect_index, voxel_spacing

__all__ = [
    "SlicePredictor",
    "linear_interpolate",
    "cubic_interpolate",
    "PRECISIONS",
    "native_bf16",
    "resolve_precision",
    "NetworkPredictor",
    "BASELINES",
    "upsample_array",
    "check_slice_axis",
    "upsample_file",
    "std_path",
    "upsampled_affine",
    "load_network",
    "bundle_folder",
    "load_predictor",
    "SliceInterpolationInferer",
]

PRECISIONS = ("fp32", "bf16", "auto")
MAX_BF16_PSNR_CHANGE_DB = 0.01
"""``auto`` takes bf16 only for a model whose measured test-split PSNR change under bf16 is below this."""
BATCH_PIXELS = {"cpu": 2**16, "cuda": 2**20}
"""Pixels per forward pass at most, per device type, whatever ``batch_size``: on a CPU one 256 x 256 slice, so that
the activations stay in cache (measured: 0.85 of the fp32 matmul ceiling at batch 1 against 0.59 at batch 8, and 4.6x
against 1.8x in bf16); on a GPU four 512 x 512 slices. Memory follows the volume, not ``batch_size``."""


def native_bf16(device: str | torch.device = "cpu") -> bool:
    """Whether ``device`` computes bfloat16 natively: a GPU that supports it, a CPU with AVX512-BF16 or AMX."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()


def resolve_precision(precision: str, device: str | torch.device = "cpu", bf16_psnr_change_db: float | None = None) -> str:
    """``fp32`` or ``bf16`` for a requested precision.

    ``auto`` gives bf16 where ``device`` has native bfloat16 and the model's measured PSNR change under bf16
    (``bf16_psnr_change_db``, from its bundle config) is below :py:data:`MAX_BF16_PSNR_CHANGE_DB`, fp32 otherwise.

    Raises:
        InputError: an unknown precision, or bf16 on a device without native bfloat16.
    """
    if precision not in PRECISIONS:
        raise InputError(f"--precision must be one of {', '.join(PRECISIONS)}, got {precision!r}.")
    native = native_bf16(device)
    if precision == "bf16" and not native:
        raise InputError(f"--precision bf16: {torch.device(device)} has no native bfloat16 (AVX512-BF16 or AMX on a "
                         "CPU); emulated it would be slower than fp32. Use fp32 or auto.")
    if precision == "auto":
        safe = bf16_psnr_change_db is not None and abs(bf16_psnr_change_db) < MAX_BF16_PSNR_CHANGE_DB
        return "bf16" if native and safe else "fp32"
    return precision


class NetworkPredictor:
    """Apply a ``(B, 2, H, W) -> (B, 1, H, W)`` network to every pair of neighbouring full slices, in batches.

    Inputs are divided by the 99.5th percentile of the non-zero voxels of the given slices (the scaling the networks
    are trained with) and predictions multiplied back, so the result is in the volume's own units.

    Args:
        network: the network; it is put in eval mode.
        device: where to run it. Defaults to ``"cpu"``.
        batch_size: slice pairs per forward pass; the result does not depend on it. Defaults to 8.
        percentile: the intensity scaling's percentile. Defaults to 99.5.
        progress: show a progress bar. Defaults to False.
        precision: ``fp32``, ``bf16`` (autocast) or ``auto`` (:py:func:`resolve_precision`). Defaults to fp32.
        context: K, the neighbours on each side of a gap that the network takes (``2K`` input channels: for the gap
            between slices j and j+1, slices j-K+1 ... j+K, mirrored at the volume's ends). Defaults to the network's
            ``in_channels // 2``, or 1.
        spline: also give the network the protocol's ``cubic`` (the natural spline through all the slices) at each
            gap, as its last input channel. Defaults to the network's ``spline_skip``, or False.
        bf16_psnr_change_db: the model's measured PSNR change under bf16, for ``auto``. Defaults to None (unknown).

    A forward pass takes at most :py:data:`BATCH_PIXELS` pixels whatever ``batch_size``, and on a CPU the network
    runs in channels-last memory format (faster with oneDNN; the same output to float32 rounding).

    Example::

        >>> predictor = NetworkPredictor(lambda x: x.mean(1, keepdim=True))
        >>> predictor(np.ones((3, 4, 4), np.float32)).shape
        (2, 4, 4)
    """

    def __init__(
        self,
        network: Callable[[torch.Tensor], torch.Tensor],
        device: str | torch.device = "cpu",
        batch_size: int = 8,
        percentile: float = 99.5,
        progress: bool = False,
        precision: str = "fp32",
        bf16_psnr_change_db: float | None = None,
        context: int | None = None,
        spline: bool | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}.")
        self.device = torch.device(device)
        self.network = network
        if isinstance(network, torch.nn.Module):
            self.network = network.eval()
            if self.device.type == "cpu":
                self.network = network.to(memory_format=torch.channels_last)
        self.batch_size = batch_size
        self.percentile = percentile
        self.progress = progress
        self.precision = resolve_precision(precision, self.device, bf16_psnr_change_db)
        self.spline = bool(getattr(network, "spline_skip", False) if spline is None else spline)
        self.context = context or max(1, getattr(network, "in_channels", 2) // 2)

    def __call__(self, slices: np.ndarray) -> np.ndarray:
        return self.predict_channels(slices)[:, 0]

    def predict_channels(self, slices: np.ndarray) -> np.ndarray:
        """Every output channel of the network for each pair of neighbouring slices: ``(m - 1, C, H, W)``, in the
        slices' own units. ``slices`` may be a strided view; it is read one batch at a time."""
        scale = percentile_scale_factor(slices, self.percentile)
        m, h, w = slices.shape
        batch = max(1, min(self.batch_size, BATCH_PIXELS.get(self.device.type, BATCH_PIXELS["cuda"]) // (h * w)))
        out = None
        starts = range(0, m - 1, batch)
        if self.progress:
            from tqdm import tqdm

            starts = tqdm(starts, desc="slices", unit="batch", leave=False)
        cuda = self.device.type == "cuda"
        dtype = torch.float16 if cuda and not native_bf16(self.device) else torch.bfloat16
        estimate = cubic_interpolate(slices) if self.spline else None  # once per volume, the protocol's cubic
        with torch.inference_mode(), torch.autocast(self.device.type, dtype=dtype, enabled=self.precision == "bf16"):
            k = self.context
            for start in starts:
                stop = min(start + batch, m - 1)
                if k == 1:
                    x = slices[start : stop + 1]
                else:  # gaps start..stop-1 need slices start-k+1 .. stop+k-1, mirrored at the ends
                    x = slices[reflect_index(np.arange(start - k + 1, stop + k), m)]
                x = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
                x = x.pin_memory() if cuda else x
                x = x.to(self.device, non_blocking=cuda) / scale
                channels = [x[j : j + stop - start] for j in range(2 * k)]
                if estimate is not None:
                    spline = torch.from_numpy(np.ascontiguousarray(estimate[start:stop], dtype=np.float32))
                    channels.append(spline.to(self.device) / scale)
                pairs = torch.stack(channels, dim=1)
                if not cuda:
                    pairs = pairs.contiguous(memory_format=torch.channels_last)
                pred = self.network(pairs).float().mul_(scale).cpu().numpy()
                if out is None:
                    out = np.empty((m - 1, *pred.shape[1:]), dtype=np.float32)
                out[start:stop] = pred
        return out.astype(slices.dtype, copy=False)


def _work_dtype(dtype: np.dtype) -> np.dtype:
    """float32 where it holds every value of ``dtype`` exactly (int8/16, uint8/16, float16/32), else float64."""
    return np.result_type(dtype, np.float32)


def upsample_array(volume: np.ndarray, axis: int, predict: SlicePredictor, std: bool = False):
    """Insert a predicted slice between each pair of neighbouring slices along ``axis``: n slices become 2n - 1.

    The original slices are kept exactly (at even indices); the result is float32, or float64 where float32 cannot
    hold the input's values exactly. With ``std=True``, ``predict`` must have ``predict_with_std`` (a sampling
    model): the result is ``(upsampled, std)``, the second volume on the same grid, zero at the original slices.
    """
    n = volume.shape[axis]
    if n < 2:
        raise ValueError(f"upsampling needs at least 2 slices along axis {axis}, got {n}.")
    moved = np.moveaxis(volume, axis, 0)
    out = np.empty((2 * n - 1, *moved.shape[1:]), dtype=_work_dtype(volume.dtype))
    out[0::2] = moved
    slices = out[0::2]  # a view: the work copy of the input is the output's even slices
    if not std:
        out[1::2] = predict(slices)
        return np.moveaxis(out, 0, axis)
    spread = np.zeros_like(out)
    out[1::2], spread[1::2] = predict.predict_with_std(slices)
    return np.moveaxis(out, 0, axis), np.moveaxis(spread, 0, axis)


class SliceInterpolationInferer(Inferer):
    """MONAI ``Inferer`` of through-plane upsampling: ``inferer(volume, network, axis)`` applies
    :py:func:`upsample_array` ``log2(factor)`` times along ``axis``, ``network`` (a slice predictor) filling each gap.

    Args:
        factor: 2, 4, 8...: the slice spacing is divided by it. Defaults to 2.

    Raises:
        InputError: ``factor`` is not a power of two.
    """

    def __init__(self, factor: int = 2) -> None:
        if factor < 2 or factor & (factor - 1):
            raise InputError(f"--factor must be a power of two (2, 4, 8...), got {factor}.")
        self.factor = factor

    def __call__(self, inputs: np.ndarray, network: SlicePredictor, axis: int) -> np.ndarray:  # type: ignore[override]
        result = inputs
        for _ in range(int(math.log2(self.factor))):
            result = upsample_array(result, axis, network)
        return result


def upsampled_affine(affine: np.ndarray, axis: int, factor: int = 2) -> np.ndarray:
    """The affine of a volume upsampled ``factor`` times along ``axis``: that column divided, the origin unchanged."""
    affine = np.array(affine, dtype=np.float64)
    affine[:3, axis] /= factor
    return affine


def _cast_like(data: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Cast back to the input's dtype: integers are rounded and clipped to the dtype's range (in ``data``'s memory)."""
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        high = data.dtype.type(info.max)
        if int(high) > info.max:  # int64's max rounds up to 2**63 in float64, which would overflow
            high = np.nextafter(high, 0)
        np.clip(np.rint(data, out=data), info.min, high, out=data)  # in place: no full-size copies
    return data.astype(dtype, copy=False)


def check_slice_axis(path: str | os.PathLike, shape: tuple[int, ...], axis: int) -> None:
    """Reject an axis that is not 0, 1 or 2, or a volume with fewer than 3 slices along it, naming the file.

    Raises:
        InputError: the bad axis or slice count.
    """
    if axis not in (0, 1, 2):
        raise InputError(f"{path}: the slice axis (--axis) must be 0, 1 or 2, got {axis}.")
    if shape[axis] < 3:
        raise InputError(f"{path}: {shape[axis]} slices along axis {axis}; at least 3 are needed.")


def std_path(output_path: str | os.PathLike) -> Path:
    """Where the uncertainty map of ``output_path`` goes: ``OUT_std.nii.gz`` beside ``OUT.nii.gz``."""
    output_path = Path(output_path)
    name, suffix = (output_path.name[:-7], ".nii.gz") if output_path.name.endswith(".nii.gz") else (output_path.stem, output_path.suffix)
    return output_path.with_name(f"{name}_std{suffix}")


def upsample_file(
    input_path: str | os.PathLike,
    output_path: str | os.PathLike,
    predict: SlicePredictor,
    axis: int | None = None,
    factor: int = 2,
    overwrite: bool = False,
    std: bool = False,
) -> dict:
    """Upsample a NIfTI volume through-plane by ``factor`` (2, 4, 8...: x2 applied repeatedly) and write it atomically.

    The output keeps the input's dtype, header, units and qform/sform codes; its slice-axis affine column is divided
    by ``factor`` and its origin is unchanged, so every original slice keeps its world position. The input file is
    only read.

    Args:
        input_path: a 3D NIfTI file (a 4D file with one volume is accepted).
        output_path: the NIfTI file to write.
        predict: a slice predictor (see the module docstring).
        axis: the slice axis, or None to detect it from the affine. Defaults to None.
        factor: a power of two. Defaults to 2.
        overwrite: replace an existing output. Defaults to False.
        std: also write the per-voxel standard deviation of a sampling model's samples (``predict`` has
            ``predict_with_std``) as float32 NIfTI on the output's grid, at :py:func:`std_path`. Needs ``factor`` 2.
            Defaults to False.

    Returns:
        a summary: the axis, the input and output shapes and spacings (and ``std_output``).

    Raises:
        InputError: bad input file, axis, factor or output path (nothing is written).
    """
    inferer = SliceInterpolationInferer(factor)
    if std and (factor != 2 or not hasattr(predict, "predict_with_std")):
        raise InputError("an uncertainty map (--samples K > 1) needs a sampling model (fast_ddpm) and --factor 2.")
    check_output_path(output_path, overwrite)
    if std:
        check_output_path(std_path(output_path), overwrite)
    data, img = load_volume(input_path)
    axis = find_slice_axis(img.affine) if axis is None else axis
    check_slice_axis(input_path, data.shape, axis)
    affine = upsampled_affine(img.affine, axis, factor)
    summary = {}
    if std:
        result, spread = upsample_array(data, axis, predict, std=True)
        save_volume(std_path(output_path), spread.astype(np.float32), affine, img, overwrite)
        summary["std_output"] = str(std_path(output_path))
    else:
        result = inferer(data, predict, axis)
    result = _cast_like(result, data.dtype)
    if np.issubdtype(data.dtype, np.integer) and data.dtype.itemsize == 8:  # float64 cannot hold every (u)int64
        np.moveaxis(result, axis, 0)[::factor] = np.moveaxis(data, axis, 0)
    save_volume(output_path, result, affine, img, overwrite)
    return {
        **summary,
        "axis": axis,
        "input_shape": tuple(data.shape),
        "output_shape": tuple(result.shape),
        "input_spacing": tuple(voxel_spacing(img.affine).tolist()),
        "output_spacing": tuple(voxel_spacing(affine).tolist()),
    }


BUNDLES_DIR = Path(__file__).resolve().parents[1] / "bundles"
BUNDLES = {
    "residual_cnn": "mri_slice_interpolation_residual_cnn",
    "residual_cnn_4slice": "mri_slice_interpolation_residual_cnn_4slice",
    "srgan": "mri_slice_interpolation_srgan",
    "fast_ddpm": "mri_slice_interpolation_fast_ddpm",
}
"""Short names of the shipped bundles (folders of ``bundles/`` in a source checkout)."""


def read_weights(checkpoint: str | os.PathLike) -> dict:
    """A state dict read with ``torch.load(weights_only=True)``: tensors and plain containers only, so a file that
    would need an unrestricted unpickle (which can run code) is refused.

    Raises:
        InputError: a missing, unreadable or unsafe file.
    """
    try:
        return torch.load(checkpoint, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise InputError(f"{checkpoint}: not a plain weights file; refused to unpickle it, as that could run code.") from None
    except (OSError, RuntimeError, EOFError) as err:
        raise InputError(f"{checkpoint}: unreadable weights ({type(err).__name__}: {err}).") from None


def _load_state(network: torch.nn.Module, state: dict, checkpoint, load=None) -> torch.nn.Module:
    try:
        (load or torch.nn.Module.load_state_dict)(network, state)
    except (RuntimeError, TypeError, AttributeError, ValueError) as err:
        raise InputError(f"{checkpoint}: the weights do not fit the network ({str(err).splitlines()[0]})") from None
    return network


def load_network(network: torch.nn.Module, checkpoint: str | os.PathLike, device: str | torch.device = "cpu"):
    """Load a state dict saved by the bundle's ``CheckpointSaver`` (:py:func:`read_weights`) into ``network``, move
    it to ``device`` and set it to eval mode.

    Raises:
        InputError: an unreadable or unsafe file, or weights that do not fit ``network``.
    """
    return _load_state(network, read_weights(checkpoint), checkpoint).to(device).eval()


def load_pretrained(network: torch.nn.Module, checkpoint: str | os.PathLike | None, load=None) -> torch.nn.Module:
    """Start training from the weights at ``checkpoint`` (the bundles' ``pretrained``); ``""`` or None: from scratch.

    Args:
        network: the network to train, changed in place.
        checkpoint: a state dict file (:py:func:`read_weights`), or ``""``/None.
        load: ``load(network, state_dict)``; defaults to ``load_state_dict`` (strict). The SRGAN passes
            ``warm_start`` to start its deeper generator from the residual CNN.

    Raises:
        InputError: an unreadable or unsafe file, or weights that do not fit ``network``.
    """
    if not checkpoint:
        return network
    return _load_state(network, read_weights(checkpoint), checkpoint, load)


def bundle_folder(method: str) -> Path | None:
    """The bundle folder named by ``method`` (a short name or a path), or None when it names none."""
    folder = BUNDLES_DIR / BUNDLES[method] if method in BUNDLES else Path(method)
    return folder if (folder / "configs" / "inference.json").is_file() else None


def load_predictor(method: str, device: str | torch.device = "cpu", batch_size: int = 8, progress: bool = False,
                   samples: int = 1, seed: int | None = None, precision: str = "fp32"):
    """The slice predictor named ``method``: ``linear``, ``cubic``, a shipped bundle's short name or a bundle folder.

    A bundle's ``configs/inference.json`` defines its ``predictor`` (network, weights, scaling); ``device`` and
    ``batch_size`` override the config's, and so do ``samples`` (K samples per slice) and ``seed`` for a sampling
    model, whose config has them. ``precision`` (:py:data:`PRECISIONS`) goes to the config's ``precision``; ``auto``
    reads the bundle's measured ``bf16_psnr_change_db``.

    Raises:
        InputError: an unknown method or precision, or a bundle without weights.
    """
    if precision not in PRECISIONS:
        raise InputError(f"--precision must be one of {', '.join(PRECISIONS)}, got {precision!r}.")
    if method in BASELINES:
        return BASELINES[method]
    folder = bundle_folder(method)
    if folder is None:
        choices = ", ".join([*BASELINES, *BUNDLES])
        raise InputError(f"unknown method {method!r}; choose one of {choices}, or a bundle folder with configs/inference.json.")
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(folder / "configs" / "inference.json"))
    parser.update({"bundle_root": str(folder), "device": torch.device(device), "batch_size": batch_size})
    if "precision" in parser:  # resolved here, so that a bad choice is one line, not a config traceback
        parser.update({"precision": resolve_precision(precision, device, parser.get("bf16_psnr_change_db"))})
    elif precision != "fp32":
        raise InputError(f"{folder}: its inference config has no precision option; use --precision fp32.")
    if "samples" in parser:
        parser.update({"samples": samples, **({} if seed is None else {"seed": seed})})
    if not Path(parser.get_parsed_content("checkpoint")).is_file():
        raise InputError(f"{folder}: no weights at {parser.get_parsed_content('checkpoint')}; train the bundle first.")
    predictor = parser.get_parsed_content("predictor")
    predictor.progress = progress
    return predictor
