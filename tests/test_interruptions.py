"""SIGKILL at random moments, two writers in one folder: outputs are whole or absent, never partial or mixed."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from misr_monai.io import InputError, atomic_write
from tests.conftest import ROOT, smooth_volume, write_nifti

KILLS = 6


def _misr(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "misr_monai", *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope="module")
def volumes(tmp_path_factory):
    """Eight volumes (gzipped and plain) and their upsampled reference, written by one uninterrupted run."""
    root = tmp_path_factory.mktemp("kill")
    (root / "in").mkdir()
    for i in range(8):
        write_nifti(root / "in" / f"sub-{i}.nii{'.gz' if i % 2 else ''}", smooth_volume((128, 128, 32), seed=i))
    proc = _misr("upsample", str(root / "in"), str(root / "reference"), "--model", "cubic")
    start = _started(proc, root / "reference")
    assert proc.wait(timeout=300) == 0, proc.stderr.read()
    return root, time.perf_counter() - start


def _started(proc: subprocess.Popen, out: Path) -> float:
    """Wait until ``proc`` has made its output folder (its imports done, its work begun); return the time."""
    while not out.is_dir() and proc.poll() is None:
        time.sleep(0.005)
    return time.perf_counter()


def _check_folder(out: Path, reference: Path) -> int:
    """Every visible file in ``out`` equals its reference, byte for byte in its voxels; returns how many there are."""
    visible = [p for p in out.iterdir() if not p.name.startswith(".")] if out.is_dir() else []
    for path in visible:
        np.testing.assert_array_equal(nib.load(path).get_fdata(), nib.load(reference / path.name).get_fdata())
    return len(visible)


def test_sigkill_at_random_moments_leaves_no_partial_output(volumes, tmp_path):
    root, seconds = volumes
    rng = random.Random(0)
    complete, temporaries = [], []
    for k in range(KILLS):
        proc = _misr("upsample", str(root / "in"), str(tmp_path / f"out{k}"), "--model", "cubic")
        _started(proc, tmp_path / f"out{k}")
        time.sleep(rng.uniform(0, seconds))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        complete.append(_check_folder(tmp_path / f"out{k}", root / "reference"))  # raises on a partial file
        temporaries.append(len(list(tmp_path.glob(f"out{k}/.*"))))
    print(f"{KILLS} kills at random moments of a {seconds:.2f} s run (after start-up): complete files {complete}, killed writers' hidden "
          f"temporaries {temporaries}, corrupt or partial visible files 0")
    assert 0 < sum(complete) < 8 * KILLS  # the kills fell inside the writing, not all before or after it
    last = tmp_path / f"out{KILLS - 1}"
    proc = _misr("upsample", str(root / "in"), str(last), "--model", "cubic", "--overwrite")
    assert proc.wait(timeout=300) == 0, proc.stderr.read()
    assert _check_folder(last, root / "reference") == 8
    assert not list(last.glob(".*"))  # the killed writers' temporaries were swept


def test_sigkill_during_evaluate_leaves_whole_files(volumes, tmp_path):
    """Tables and figures of ``misr evaluate`` are whole (parse, decode) or absent, whenever it is killed; the kills
    land while it runs (return code -SIGKILL) and at least one of them between its first and last file."""
    import csv

    import matplotlib.image

    root, _ = volumes
    names = sorted(p.name for p in (root / "in").iterdir())[:4]
    (tmp_path / "dl.json").write_text(json.dumps({"test": [{"image": n} for n in names]}))
    args = ["evaluate", "--datalist", str(tmp_path / "dl.json"), "--dataset-dir", str(root / "in")]
    whole = _misr(*args, "--out", str(tmp_path / "whole"))
    start = _started(whole, tmp_path / "whole")
    assert whole.wait(timeout=300) == 0, whole.stderr.read()
    seconds = time.perf_counter() - start
    total = len([p for p in (tmp_path / "whole").iterdir() if not p.name.startswith(".")])  # figures per volume, tables
    seen = []
    for k, share in enumerate((0.3, 0.5, 0.7)):  # the figures are written volume by volume, the tables at the end
        proc = _misr(*args, "--out", str(tmp_path / f"eval{k}"))
        _started(proc, tmp_path / f"eval{k}")  # the CLI makes the folder before the first volume
        time.sleep(share * seconds)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait() == -signal.SIGKILL  # killed while running, not after it ended
        visible = [p for p in (tmp_path / f"eval{k}").iterdir() if not p.name.startswith(".")]
        for path in visible:
            if path.suffix == ".png":
                assert matplotlib.image.imread(path).ndim == 3
            elif path.suffix == ".csv":
                rows = len(list(csv.DictReader(path.open())))
                assert rows == 2 * len(names) if path.name == "per_volume.csv" else rows == 2  # linear and cubic
        seen.append(len(visible))
    print(f"evaluate ({seconds:.1f} s, {total} files) killed 3 times: visible files {seen}, all whole")
    assert any(0 < n < total for n in seen)  # a kill landed between the first file and the last


def test_two_writers_in_one_folder(volumes, tmp_path):
    """Without --overwrite each file is written by one process and the other says so; with it both succeed."""
    root, _ = volumes
    out = tmp_path / "out"
    procs = [_misr("upsample", str(root / "in"), str(out), "--model", "cubic") for _ in range(2)]
    errors = [p.communicate(timeout=300)[1] for p in procs]
    assert _check_folder(out, root / "reference") == 8
    for path in (root / "in").iterdir():  # written by one process, refused by the other in one line
        assert sum(f"{out / path.name}: output exists" in e for e in errors) == 1
    assert sorted(p.returncode for p in procs) in ([0, 2], [2, 2]) and all("Traceback" not in e for e in errors)

    procs = [_misr("upsample", str(root / "in"), str(out), "--model", "cubic", "--overwrite") for _ in range(2)]
    assert [p.wait(timeout=300) for p in procs] == [0, 0]
    assert _check_folder(out, root / "reference") == 8
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]


def test_atomic_write_never_replaces_without_overwrite(tmp_path):
    path = tmp_path / "out.txt"

    def write(tmp):  # another process publishes ``path`` while this one is writing
        path.write_text("theirs")
        Path(tmp).write_text("mine")

    with pytest.raises(InputError, match="written meanwhile by another process"):
        atomic_write(path, write, overwrite=False)
    assert path.read_text() == "theirs" and os.listdir(tmp_path) == ["out.txt"]
    atomic_write(path, lambda tmp: Path(tmp).write_text("mine"))
    assert path.read_text() == "mine"


def test_atomic_write_sweeps_only_dead_writers_temporaries(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".out.nii.gz.{dead.pid}.abc.nii.gz"
    live = tmp_path / f".out.nii.gz.{os.getppid()}.abc.nii.gz"  # a writer still running
    stale.write_text("partial")
    live.write_text("partial")
    atomic_write(tmp_path / "out.nii.gz", lambda tmp: Path(tmp).write_text("whole"))
    assert sorted(os.listdir(tmp_path)) == [live.name, "out.nii.gz"]
