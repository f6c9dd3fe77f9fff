# Copyright (c) misr_monai contributors. Licensed under the Apache License, Version 2.0.
"""Checked NIfTI reading and atomic NIfTI writing for the command line and volume inference."""

from __future__ import annotations

import hashlib
import math
import os
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

import nibabel as nib
import numpy as np

__all__ = ["InputError", "NIFTI_SUFFIXES", "load_header", "load_volume", "save_volume", "check_output_path", "check_not_input", "make_output_folder", "std_path",
           "atomic_write", "check_affine",
           "report_input_errors", "input_error_in", "print_error", "print_line", "SkippedInputs", "file_sha256"]


class InputError(ValueError):
    """Bad user input; the command line prints ``str(err)`` as one line and exits with code 2."""


def load_header(path: str | os.PathLike) -> tuple[nib.Nifti1Image, tuple[int, int, int]]:
    """Open a NIfTI file and check its header without reading the voxels.

    Returns:
        ``(image, shape)``: the nibabel image (voxels not yet read) and its 3D shape.

    Raises:
        InputError: missing or unreadable file; not NIfTI; not 3D; a broken affine; more voxels than this machine's
            memory holds.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file.")
    try:
        img = nib.load(str(path))
    except Exception as err:  # nibabel raises many types for bad files
        raise InputError(f"{path}: not a readable NIfTI file ({type(err).__name__}: {err}).") from None
    if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
        raise InputError(f"{path}: not a NIfTI file (read as {type(img).__name__}); give a .nii or .nii.gz volume.")
    shape = img.shape
    if len(shape) == 4 and shape[3] == 1:
        shape = shape[:3]
    if len(shape) != 3:
        raise InputError(f"{path}: expected a 3D volume, got shape {tuple(img.shape)}.")
    check_affine(path, img.affine)
    _check_memory(path, shape, img.get_data_dtype())
    return img, shape


def load_volume(path: str | os.PathLike) -> tuple[np.ndarray, nib.Nifti1Image]:
    """Load a 3D NIfTI volume (a 4D file with one volume is accepted) and validate it.

    Args:
        path: a ``.nii`` or ``.nii.gz`` file.

    Returns:
        ``(data, image)``: the voxels with header scaling applied, in their own dtype (integers stay integers), and the
        nibabel image whose header and affine describe them.

    Raises:
        InputError: what :py:func:`load_header` rejects; corrupt or truncated voxel data; NaN or Inf voxels.
    """
    img, shape = load_header(path)
    try:
        data = np.asanyarray(img.dataobj).reshape(shape)
    except Exception as err:
        raise InputError(f"{path}: corrupt or truncated voxel data ({type(err).__name__}: {err}).") from None
    if np.issubdtype(data.dtype, np.floating) and not np.isfinite(data).all():
        bad = int((~np.isfinite(data)).sum())
        raise InputError(f"{path}: {bad} NaN or Inf voxels; fix or mask them before upsampling.")
    return data, img


def check_affine(path: str | os.PathLike, affine: np.ndarray) -> None:
    """Reject an affine with NaN/Inf entries, a zero-length voxel axis or parallel axes (oblique and sheared pass).

    Raises:
        InputError: naming ``path`` and the problem.
    """
    affine = np.asarray(affine, dtype=np.float64)
    if not np.isfinite(affine).all():
        raise InputError(f"{path}: the header's affine has NaN or Inf entries.")
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    if (spacing == 0).any():
        raise InputError(f"{path}: zero voxel spacing along axis {int(np.argmin(spacing))}; the header (pixdim/sform) is broken.")
    if abs(np.linalg.det(affine[:3, :3])) <= 1e-6 * spacing.prod():
        raise InputError(f"{path}: the header's affine is singular (two voxel axes point the same way).")


def _check_memory(path, shape: tuple[int, ...], dtype: np.dtype) -> None:
    """Refuse, before reading, a volume whose voxels and x2 float32 result would not fit in this machine's memory."""
    need = math.prod(shape) * (max(np.dtype(dtype).itemsize, 4) + 8)
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if need > total:
        raise InputError(f"{path}: {shape} voxels need about {need / 2**30:.0f} GiB; this machine has {total / 2**30:.0f} GiB.")


NIFTI_SUFFIXES = (".nii", ".nii.gz")


def check_output_path(path: str | os.PathLike, overwrite: bool = False, suffixes: tuple[str, ...] = ()) -> Path:
    """Reject, before any work, an output file that is a folder, lacks one of ``suffixes`` (when given), exists
    (without ``overwrite``) or whose folder cannot be written."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path}: is a folder; give a file name{' ending in ' + ' or '.join(suffixes) if suffixes else ''}.")
    if suffixes and not path.name.endswith(suffixes):
        raise InputError(f"{path}: unsupported output type; give a name ending in {' or '.join(suffixes)}.")
    if path.exists() and not overwrite:
        raise InputError(f"{path}: output exists; pass --overwrite to replace it.")
    folder = path.parent
    if not folder.is_dir():
        raise InputError(f"{path}: output folder {folder} does not exist.")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(f"{path}: output folder {folder} is not writable.")
    return path


def std_path(output_path: str | os.PathLike) -> Path:
    """Where the uncertainty map of ``output_path`` goes: ``OUT_std.nii.gz`` beside ``OUT.nii.gz``."""
    output_path = Path(output_path)
    name, suffix = (output_path.name[:-7], ".nii.gz") if output_path.name.endswith(".nii.gz") else (output_path.stem, output_path.suffix)
    return output_path.with_name(f"{name}_std{suffix}")


def make_output_folder(path: str | os.PathLike) -> Path:
    """The output folder ``path``, created if need be.

    Raises:
        InputError: it is a file, or cannot be created.
    """
    path = Path(path)
    if path.is_file():
        raise InputError(f"{path}: is a file; give a folder for the outputs.")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InputError(f"{path}: cannot create the output folder ({err.strerror}).") from None
    return path


def check_not_input(output: str | os.PathLike, source: str | os.PathLike) -> None:
    """Refuse an output that is the input itself (the same resolved path, or the same file through a link), with or
    without ``--overwrite``: an input is never overwritten.

    Raises:
        InputError: the output is the input.
    """
    output, source = Path(output), Path(source)
    same = output.resolve() == source.resolve() or (output.exists() and source.exists() and os.path.samefile(output, source))
    if same:
        raise InputError(f"{output}: this is the input; inputs are never overwritten, so give another output name.")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _remove_stale_temporaries(path: Path) -> None:
    """Delete temporary files of ``path`` left by writers that were killed (their process id is gone)."""
    for tmp in path.parent.glob(f".{path.name}.*"):
        pid = tmp.name[len(path.name) + 2 :].split(".", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            tmp.unlink(missing_ok=True)


def atomic_write(path: str | os.PathLike, write, overwrite: bool = True) -> None:
    """Call ``write(tmp_path)`` on a hidden temporary file beside ``path``, then publish it as ``path`` in one step.

    A reader never sees a partial ``path``. A writer killed midway leaves only its hidden temporary file
    (``.NAME.PID.*``), which the next write of ``path`` removes. With ``overwrite=False`` the file is published
    with a hard link, which fails if ``path`` appeared meanwhile (another process): nothing is replaced then.

    Raises:
        InputError: ``overwrite`` is False and ``path`` exists.
    """
    path = Path(path)
    _remove_stale_temporaries(path)
    suffix = "".join(path.suffixes) or ".tmp"
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        if overwrite:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise InputError(f"{path}: output exists (written meanwhile by another process); pass --overwrite to replace it.") from None
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def file_sha256(path: str | os.PathLike) -> str:
    """The sha256 hex digest of a file, read in chunks."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def save_volume(path: str | os.PathLike, data: np.ndarray, affine: np.ndarray, template: nib.Nifti1Image,
                overwrite: bool = True) -> None:
    """Write ``data`` atomically as NIfTI, with ``template``'s header (units, intent, qform/sform codes) and ``affine``.

    The data are stored unscaled in their own dtype, so values written are exactly the values read back. With
    ``overwrite=False`` an existing ``path`` is never replaced (see :py:func:`atomic_write`).
    """
    header = template.header.copy()
    header.set_data_dtype(data.dtype)
    img = type(template)(data, affine, header)
    img.set_sform(affine, code=int(template.header["sform_code"]))
    img.set_qform(affine, code=int(template.header["qform_code"]))
    atomic_write(path, lambda tmp: nib.save(img, tmp), overwrite)


def print_error(err: Exception) -> None:
    """Print ``err`` as one ``error: ...`` line on stderr, above any progress bar."""
    from tqdm import tqdm

    tqdm.write("error: " + " ".join(str(err).split()), file=sys.stderr)


def print_line(text: str) -> None:
    """Print one line on stdout, above any progress bar."""
    from tqdm import tqdm

    tqdm.write(" ".join(text.split()))


class SkippedInputs:
    """Report a bad input in one line and go on; name them all in one summary at the end.

    Every place that processes many files (folder upsampling, the protocol's evaluators, ``misr compare``, ``misr
    datalist``) runs each file under :py:meth:`guard`: an :py:class:`InputError` is printed as ``error: FILE:
    problem`` (:py:func:`print_error`) and the file is recorded; :py:meth:`raise_if_any` then raises the one summary
    line, ``[SOURCE: ]N[ of TOTAL] WHAT failed[, CONSEQUENCE]: NAMES.``

    Args:
        what: what the items are, plural (``"files"``, ``"volumes"``). Defaults to ``"files"``.
        consequence: what became of them (``"left out of the tables"``), or ``""``. Defaults to ``""``.

    Example::

        >>> skipped = SkippedInputs("volumes", "left out of the tables")
        >>> for name in ("a.nii.gz", "b.nii.gz"):
        ...     with skipped.guard(name):
        ...         if name == "b.nii.gz":
        ...             raise InputError(f"{name}: 2 slices along axis 2; at least 3 are needed.")
        >>> skipped.names
        ['b.nii.gz']
    """

    def __init__(self, what: str = "files", consequence: str = "") -> None:
        self.what, self.consequence = what, consequence
        self.names: list[str] = []

    @contextmanager
    def guard(self, name: str | os.PathLike):
        """Run the block for input ``name``; an :py:class:`InputError` is said in one line and ``name`` recorded."""
        try:
            yield
        except InputError as err:
            print_error(err)
            self.names.append(str(name))

    def raise_if_any(self, source: str = "", total: int | None = None) -> None:
        """Raise the summary :py:class:`InputError` if any input failed.

        Args:
            source: where the inputs came from (a folder), or ``""``. Defaults to ``""``.
            total: how many inputs there were, or None to leave it out. Defaults to None.
        """
        if self.names:
            head = f"{source}: " if source else ""
            count = f"{len(self.names)} of {total}" if total is not None else f"{len(self.names)}"
            tail = f", {self.consequence}" if self.consequence else ""
            raise InputError(f"{head}{count} {self.what} failed{tail}: {', '.join(self.names)}.")


def input_error_in(err: BaseException) -> InputError | None:
    """The :py:class:`InputError` in ``err``'s chain of causes (MONAI's config parser wraps what configs raise), or None."""
    cause = err
    while cause is not None and not isinstance(cause, InputError):
        cause = cause.__cause__ or cause.__context__
    return cause


def report_input_errors() -> None:
    """Make an uncaught :py:class:`InputError` end the process with its one line, not a traceback.

    For ``python -m monai.bundle run``, where MONAI wraps errors raised in configs: a bundle's ``initialize`` calls
    it. Any other exception keeps its traceback.
    """
    previous = sys.excepthook

    def hook(kind, err, traceback):
        cause = input_error_in(err)
        if cause is None:
            previous(kind, err, traceback)
        else:
            print("error: " + " ".join(str(cause).split()), file=sys.stderr)

    sys.excepthook = hook
