# Copyright (c) misr_monai contributors. Licensed under the Apache License, Version 2.0.
"""The registry of shipped bundles: their short names, folders, and the slice predictor each defines.

Importing it is light (no torch), so that ``misr --help`` can list the names."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

__all__ = ["bundles_dir", "BUNDLES", "DEFAULT_MODEL", "SELF_ENSEMBLE", "split_samples", "split_sharpness", "bundle_folder", "load_predictor", "with_adapted", "resolve_device", "load_sampling_predictor",
           "read_calibration", "write_calibration"]

BUNDLES = {
    "residual_cnn": "mri_slice_interpolation_residual_cnn",
    "context_cnn": "mri_slice_interpolation_context_cnn",
    "context_cnn_brain": "mri_slice_interpolation_context_cnn_brain",
    "srgan": "mri_slice_interpolation_srgan",
    "fast_ddpm": "mri_slice_interpolation_fast_ddpm",
}
"""Short names of the shipped bundles and their folders (:py:func:`bundles_dir`)."""
DEFAULT_MODEL = "context_cnn"
"""The model of ``misr upsample`` and ``misr demo`` without ``--model``: clearly better than cubic over all the
comparison's test volumes, and no model clearly better than it (``docs/comparison/paired.md``: PSNR, pooled, the
bootstrap interval excluding 0 and Wilcoxon p < 0.05), kept in step by a test. A default changes on evidence only:
in release 0.9.0 ``context_cnn_brain`` leads by 0.03 dB, interval [-0.27, +0.32], p = 0.85; ``context_cnn`` is also
the one trained on both anatomies."""


_SAMPLES = re.compile(r"(?P<name>.+):k(?P<samples>[1-9][0-9]*)")
SELF_ENSEMBLE = ":se"
"""The suffix of a network model's name that asks for its self-ensemble (``context_cnn:se``: the mean over 16 flips,
rotations and slice orders, :py:class:`~misr_monai.predictors.network.NetworkPredictor`)."""


def split_samples(method: str) -> tuple[str, int | None]:
    """A method name and the samples per slice it names: ``"fast_ddpm:k8"`` is ``fast_ddpm`` scored as the mean of
    8 samples per slice, ``("fast_ddpm", 8)``; a name without the ``:kK`` suffix gives ``(method, None)``."""
    match = _SAMPLES.fullmatch(method)
    return (match["name"], int(match["samples"])) if match else (method, None)


_SHARPNESS = re.compile(r"(?P<name>.+)@(?P<sharpness>[0-9.]+)")


def split_sharpness(method: str) -> tuple[str, float | None]:
    """A method name and the sharpness it names: ``"srgan@0.5"`` is ``srgan`` with its refinement at half strength,
    ``("srgan", 0.5)``; a name without the ``@A`` suffix gives ``(method, None)``."""
    match = _SHARPNESS.fullmatch(method)
    return (match["name"], float(match["sharpness"])) if match else (method, None)


def bundles_dir() -> Path:
    """The folder of the shipped bundles: ``bundles/`` of the source checkout this package runs from (an editable
    install, where training updates them), else the copy an installed wheel carries as package data.

    Raises:
        InputError: neither holds them (a package built without its bundles).
    """
    from importlib.resources import files

    from misr_monai.io import InputError

    checkout = Path(__file__).resolve().parents[2] / "bundles"
    installed = Path(str(files("misr_monai") / "shipped_bundles"))
    for folder in (checkout, installed):
        if (folder / BUNDLES[DEFAULT_MODEL] / "configs" / "inference.json").is_file():
            return folder
    raise InputError(f"{installed}: the shipped bundles are missing from this install of misr_monai; install it from "
                     "its repository or a wheel built there (pip install .), or pass a bundle folder.")


def bundle_folder(method: str) -> Path | None:
    """The bundle folder named by ``method`` (a short name or a path, with or without ``:kK``), or None when it names
    none."""
    from misr_monai.adaptation import split_adapt

    method = split_sharpness(split_samples(split_adapt(method)[0].removesuffix(SELF_ENSEMBLE))[0])[0]
    folder = bundles_dir() / BUNDLES[method] if method in BUNDLES else Path(method)
    return folder if (folder / "configs" / "inference.json").is_file() else None


def load_predictor(method: str, device: str | torch.device = "cpu", batch_size: int = 8, progress: bool = False,
                   samples: int = 1, seed: int | None = None, precision: str = "fp32", self_ensemble: bool = False,
                   sharpness: float | None = None, adapt: float | None = None):
    """The slice predictor named ``method``: ``linear``, ``cubic``, a shipped bundle's short name or a bundle folder,
    for a sampling model optionally with the samples per slice (``fast_ddpm:k8``, which overrides ``samples``), for
    a network model optionally with its self-ensemble (``context_cnn:se``, or ``self_ensemble``), for a refinement
    model optionally with its sharpness (``srgan@0.5``, or ``sharpness``: 0 its base, 1 the full refinement).

    A bundle's ``configs/inference.json`` defines its ``predictor`` (network, weights, scaling); ``device`` and
    ``batch_size`` override the config's, and so do ``samples`` (K samples per slice) and ``seed`` for a sampling
    model, whose config has them. ``precision`` (:py:data:`PRECISIONS`) goes to the config's ``precision``; ``auto``
    reads the bundle's measured ``bf16_psnr_change_db``.

    Raises:
        InputError: an unknown method or precision, or a bundle without weights.
    """
    import torch

    from misr_monai.interpolation import BASELINES
    from misr_monai.io import InputError, input_error_in
    from misr_monai.precision import PRECISIONS

    from misr_monai.adaptation import AdaptingPredictor, split_adapt

    if precision not in PRECISIONS:
        raise InputError(f"--precision must be one of {', '.join(PRECISIONS)}, got {precision!r}.")
    name, named_adapt = split_adapt(method)
    adapt = adapt if named_adapt is None else named_adapt
    if adapt is not None:
        predictor = load_predictor(name, device, batch_size, progress, samples, seed, precision, self_ensemble, sharpness)
        return AdaptingPredictor(predictor, adapt, progress=progress, name=method)
    if method in BASELINES:
        return BASELINES[method]
    if method.endswith(SELF_ENSEMBLE):
        method, self_ensemble = method.removesuffix(SELF_ENSEMBLE), True
    method, named_samples = split_samples(method)
    method, named_sharpness = split_sharpness(method)
    sharpness = sharpness if named_sharpness is None else named_sharpness
    folder = bundle_folder(method)
    if folder is None:
        choices = ", ".join([*BASELINES, *BUNDLES])
        raise InputError(f"unknown method {method!r}; choose one of {choices}, or a bundle folder with configs/inference.json.")
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(folder / "configs" / "inference.json"))
    parser.update({"bundle_root": str(folder), "device": torch.device(device), "batch_size": batch_size})
    if "precision" in parser:  # resolved once, by the predictor
        parser.update({"precision": precision})
    elif precision != "fp32":
        raise InputError(f"{folder}: its inference config has no precision option; use --precision fp32.")
    if "samples" in parser:
        parser.update({"samples": named_samples or samples, **({} if seed is None else {"seed": seed})})
    elif named_samples:
        raise InputError(f"{method}: not a sampling model, so ':k{named_samples}' (samples per slice) means nothing.")
    if "self_ensemble" in parser:
        parser.update({"self_ensemble": self_ensemble})
    elif self_ensemble:
        raise InputError(f"{method}: a self-ensemble ({SELF_ENSEMBLE}, --self-ensemble) needs a network model, not a sampler.")
    if sharpness is not None:
        if "sharpness" not in parser:
            raise InputError(f"{method}: has no sharpness knob (--sharpness, @A); srgan has.")
        if not 0.0 <= sharpness <= 1.0:
            raise InputError(f"--sharpness must be in [0, 1] (0: the base model, 1: the full refinement), got {sharpness}.")
        parser.update({"sharpness": sharpness})
    if not Path(parser.get_parsed_content("checkpoint")).is_file():
        raise InputError(f"{folder}: no weights at {parser.get_parsed_content('checkpoint')}; train the bundle first.")
    try:
        predictor = parser.get_parsed_content("predictor")
    except Exception as err:  # the config parser wraps a bad precision or weights file: say it in its one line
        cause = input_error_in(err)
        if cause is None:
            raise
        raise cause from None
    predictor.progress = progress
    return predictor


def read_calibration(bundle: str | os.PathLike | None) -> tuple[float, float] | None:
    """The ``std_calibration`` ``(a, b)`` a bundle's ``configs/inference.json`` holds, None where it holds none."""
    import json

    path = None if bundle is None else Path(bundle) / "configs" / "inference.json"
    values = json.loads(path.read_text()).get("std_calibration") if path is not None and path.is_file() else None
    return None if values is None else (float(values[0]), float(values[1]))


def write_calibration(bundle: str | os.PathLike, a: float, b: float) -> Path:
    """Store ``std_calibration: [a, b]`` in the bundle's ``configs/inference.json`` (atomically); return its path."""
    import json

    from misr_monai.io import InputError, atomic_write

    path = Path(bundle) / "configs" / "inference.json"
    config = json.loads(path.read_text())
    if "std_calibration" not in config:
        raise InputError(f"{path}: no std_calibration option; the bundle's sampler cannot be recalibrated.")
    config["std_calibration"] = [round(a, 6), round(b, 6)]
    atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(config, indent=4) + "\n"))
    return path


def resolve_device(name: str | None) -> str:
    """The torch device to run on: ``name``, checked, or cuda when available, else cpu.

    Raises:
        InputError: not a torch device, or a CUDA device this machine does not have.
    """
    import torch

    from misr_monai.io import InputError

    if name is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise InputError(f"--device {name}: not a torch device (cpu, cuda, cuda:1...).") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"--device {name}: CUDA is not available on this machine; use --device cpu.")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise InputError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s).")
    return name


def load_sampling_predictor(method: str, device: str | None, batch_size: int, progress: bool, samples: int,
                            seed: int | None, precision: str, purpose: str):
    """The sampling model ``method`` with ``samples`` K >= 2 samples per slice, for ``purpose``.

    Raises:
        InputError: K below 2, or not a sampling model.
    """
    from misr_monai.io import InputError
    from misr_monai.predictors.base import is_sampling

    if samples < 2:
        raise InputError(f"--samples must be at least 2 for a standard deviation, got {samples}.")
    predictor = load_predictor(method, resolve_device(device), batch_size, progress, samples, seed, precision)
    if not is_sampling(predictor):
        raise InputError(f"{method}: not a sampling model; {purpose} needs one (fast_ddpm).")
    return predictor


def with_adapted(methods: list[str], seconds: float | None) -> list[str]:
    """``methods`` with, after each network model, the same model adapted to each volume for ``seconds``
    (``context_cnn:a180``, :py:class:`~misr_monai.adaptation.AdaptingPredictor`); ``methods`` when ``seconds`` is
    None."""
    import json

    from misr_monai.adaptation import ADAPT_SUFFIX
    from misr_monai.interpolation import BASELINES

    if not seconds:
        return methods

    def adaptable(method: str) -> bool:
        folder = None if method in BASELINES else bundle_folder(method)
        return folder is not None and "samples" not in json.loads((folder / "configs" / "inference.json").read_text())

    return list(dict.fromkeys(n for m in methods for n in (m, *([f"{m}{ADAPT_SUFFIX}{seconds:g}"] if adaptable(m) else []))))
