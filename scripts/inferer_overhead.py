"""The inferer's end-to-end time against the numpy step it wraps, alternated in one process (256x256x128, x2).

    python scripts/inferer_overhead.py METHOD PRECISION REPEATS
"""

from __future__ import annotations

import sys
import time

import torch
from monai.data import MetaTensor

from misr_monai.apps.benchmarks import synthetic_volume
from misr_monai.inferers import SliceInterpolationInferer
from misr_monai.predictors.registry import load_predictor
from misr_monai.volume import upsample_volume


def main(method: str, precision: str, repeats: int) -> None:
    volume = synthetic_volume()
    tensor = MetaTensor(torch.from_numpy(volume)[None])
    predict = load_predictor(method, "cpu", 8, precision=precision)
    inferer = SliceInterpolationInferer(2, axis=2, profile=0.0)
    paths = {"upsample_volume (numpy step)": lambda: upsample_volume(volume, 2, predict, 2),
             "SliceInterpolationInferer": lambda: inferer(tensor, predict)}
    upsample_volume(volume[..., :3], 2, predict, 2)  # warm-up
    times = {name: [] for name in paths}
    for _ in range(repeats):
        for name, run in paths.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    for name, values in times.items():
        print(f"{method} {precision}: {name}: min {min(values):.2f} s, median {sorted(values)[len(values) // 2]:.2f} s "
              f"over {repeats}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
