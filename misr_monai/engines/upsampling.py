# Copyright (c) misr_monai contributors. Licensed under the Apache License, Version 2.0.
"""Through-plane upsampling of a folder of volumes as an Ignite engine: the bundles' ``evaluator``."""

from __future__ import annotations

import os
from pathlib import Path

from ignite.engine import Engine
from monai.data import Dataset

from misr_monai.interpolation import SlicePredictor
from misr_monai.io import InputError, SkippedInputs, print_line
from misr_monai.volume import SliceInterpolationInferer, describe, upsample_file

__all__ = ["volume_dataset", "UpsampleEvaluator"]


def volume_dataset(input_dir: str | os.PathLike) -> Dataset:
    """A MONAI ``Dataset`` of ``{"image": path}`` for every ``.nii``/``.nii.gz`` of ``input_dir`` (hidden files aside).

    Raises:
        InputError: no such folder, or no NIfTI file in it.
    """
    input_dir = Path(input_dir)
    if input_dir.is_file():
        raise InputError(f"{input_dir}: is a file; the input is a folder of NIfTI volumes (one file: misr upsample).")
    if not input_dir.is_dir():
        raise InputError(f"{input_dir}: input folder not found.")
    files = sorted(p for p in input_dir.iterdir() if p.name.endswith((".nii", ".nii.gz")) and not p.name.startswith("."))
    if not files:
        raise InputError(f"{input_dir}: no .nii or .nii.gz files.")
    return Dataset([{"image": str(p)} for p in files])


class UpsampleEvaluator(Engine):
    """An Ignite engine that upsamples each volume of ``dataset`` into ``output_dir``, under the same file name.

    One iteration per ``{"image": path}`` item: :py:func:`misr_monai.volume.upsample_file` reads the volume, finds
    its slice axis, runs ``inferer`` with ``network`` (a slice predictor) and writes the result atomically;
    ``engine.state.output`` is its summary. Each file gets one line: where it was written, or (on stderr) why it was
    skipped; :py:meth:`run` raises an :py:class:`InputError` naming the bad files once the others are done. Inputs are
    only read.

    Args:
        dataset: ``{"image": path}`` items (:py:func:`volume_dataset`).
        output_dir: folder for the results; created if missing; must not hold an input.
        network: the slice predictor (the bundle's ``predictor``).
        inferer: a :py:class:`SliceInterpolationInferer` (its ``factor``).
        axis: the slice axis, or None to find it from each affine. Defaults to None.
        overwrite: replace existing outputs. Defaults to False.
        std: also write a sampling model's per-voxel standard deviation (``OUT_std.nii.gz``). Defaults to False.
        val_handlers: handlers with ``attach(engine)``, as MONAI's evaluators take. Defaults to None.
    """

    def __init__(
        self,
        dataset,
        output_dir: str | os.PathLike,
        network: SlicePredictor,
        inferer: SliceInterpolationInferer,
        axis: int | None = None,
        overwrite: bool = False,
        std: bool = False,
        val_handlers: list | None = None,
    ) -> None:
        super().__init__(self._iteration)
        self.dataset, self.output_dir, self.network, self.inferer = dataset, Path(output_dir), network, inferer
        self.axis, self.overwrite, self.std = axis, overwrite, std
        self.written: list[Path] = []
        self.skipped = SkippedInputs("files")
        for handler in val_handlers or []:
            handler.attach(self)

    def _iteration(self, engine: Engine, item: dict) -> dict:
        path = Path(item["image"])
        summary = {}
        with self.skipped.guard(path.name):
            summary = upsample_file(path, self.output_dir / path.name, self.network, self.axis, self.inferer.factor,
                                    self.overwrite, self.std)
            self.written.append(self.output_dir / path.name)
            print_line(f"{path.name}: written to {self.written[-1]} ({describe(summary)})")
        return summary

    def run(self) -> list[Path]:  # type: ignore[override]
        """Upsample every volume; return the files written.

        Raises:
            InputError: the output folder holds an input, or some files failed (each already said in its line).
        """
        folders = {Path(item["image"]).parent.resolve() for item in self.dataset}
        if self.output_dir.resolve() in folders:
            raise InputError(f"{self.output_dir}: the output folder must differ from the input folder (inputs are never modified).")
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self.written, self.skipped = [], SkippedInputs("files")
        super().run([self.dataset[i] for i in range(len(self.dataset))], max_epochs=1)
        self.skipped.raise_if_any(", ".join(sorted(str(f) for f in folders)), len(self.dataset))
        return self.written
