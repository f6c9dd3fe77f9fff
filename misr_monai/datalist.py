# Copyright (c) misr_monai contributors. Licensed under the Apache License, Version 2.0.
"""Patient-wise, seeded datalists in MONAI's decathlon style."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np

from misr_monai.io import InputError, SkippedInputs, atomic_write, load_header

__all__ = ["subject_id", "make_datalist", "write_datalist", "load_split"]

_BIDS_SUBJECT = re.compile(r"(?:^|_)(sub-[A-Za-z0-9]+)")


def subject_id(path: str | os.PathLike) -> str:
    """The subject a file belongs to: its BIDS ``sub-<label>``, else its file stem up to the first underscore.

    Example::

        >>> subject_id("ds011/sub-03_inplaneT2.nii.gz"), subject_id("Prostate3T-03-0001_T2_tra.nii.gz")
        ('sub-03', 'Prostate3T-03-0001')
    """
    name = Path(path).name
    match = _BIDS_SUBJECT.search(name)
    if match:
        return match.group(1)
    stem = name.split(".")[0]
    return stem.split("_")[0]


def _count(value: float, total: int, name: str) -> int:
    if value < 0:
        raise InputError(f"--{name} must not be negative, got {value}.")
    return int(round(value * total)) if value < 1 else int(value)


def make_datalist(root: str | os.PathLike, pattern: str = "**/*.nii*", val: float = 0.2, test: float = 0.2, seed: int = 0,
                  skipped: SkippedInputs | None = None):
    """Split the NIfTI files under ``root`` into training, validation and test sets by subject.

    Args:
        root: the dataset folder; paths in the datalist are relative to it.
        pattern: glob of the files to include, relative to ``root``. Defaults to ``"**/*.nii*"``.
        val: validation subjects: a fraction (< 1) or a count (>= 1). Defaults to 0.2.
        test: test subjects, likewise. Defaults to 0.2.
        seed: shuffling seed; the same files and seed give the same split. Defaults to 0.
        skipped: where the unusable files are recorded (:py:class:`~misr_monai.io.SkippedInputs`). Defaults to a new one.

    Returns:
        ``{"training": [...], "validation": [...], "test": [...]}``, each entry ``{"image": path, "subject": id}``,
        and ``"excluded"``: the files whose header is unreadable or not a usable 3D volume (each also said in one
        line on stderr), left out of the splits. Voxel data are not read.

    Raises:
        InputError: no usable files match, or the splits ask for more subjects than there are.
    """
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root}: not a folder.")
    files = sorted(p for p in root.glob(pattern) if (p.is_file() or p.is_symlink()) and p.name.endswith((".nii", ".nii.gz")))
    if not files:
        raise InputError(f"{root}: no NIfTI files match {pattern!r}.")
    subjects: dict[str, list[str]] = {}
    skipped = SkippedInputs("files") if skipped is None else skipped
    for f in files:
        with skipped.guard(f.relative_to(root).as_posix()):
            load_header(f)
            subjects.setdefault(subject_id(f), []).append(f.relative_to(root).as_posix())
    if not subjects:
        raise InputError(f"{root}: none of the {len(files)} NIfTI files matching {pattern!r} is usable.")
    order = sorted(subjects)
    np.random.default_rng(seed).shuffle(order)
    n_test, n_val = _count(test, len(order), "test"), _count(val, len(order), "val")
    if n_test + n_val > len(order):
        raise InputError(f"{root}: {len(order)} subjects cannot give {n_test} test and {n_val} validation subjects.")
    groups = {"test": order[:n_test], "validation": order[n_test : n_test + n_val], "training": order[n_test + n_val :]}
    datalist = {
        split: [{"image": path, "subject": s} for s in sorted(ids) for path in subjects[s]]
        for split, ids in (("training", groups["training"]), ("validation", groups["validation"]), ("test", groups["test"]))
    }
    return {**datalist, "excluded": list(skipped.names)} if skipped.names else datalist


def write_datalist(datalist: dict, path: str | os.PathLike) -> None:
    """Write a datalist as indented JSON, atomically."""
    text = json.dumps(datalist, indent=4) + "\n"  # as the Model Zoo's pre-commit hooks format JSON
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def load_split(path: str | os.PathLike, split: str) -> list[dict]:
    """The entries of one split of a datalist file, with a clear error for a missing file or split."""
    path = Path(path)
    try:
        datalist = json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(f"{path}: no such datalist.") from None
    except (OSError, json.JSONDecodeError) as err:
        raise InputError(f"{path}: not a readable JSON datalist ({err}).") from None
    if split not in datalist:
        raise InputError(f"{path}: no split {split!r}; it has {sorted(datalist)}.")
    return datalist[split]
