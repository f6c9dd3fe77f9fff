"""The tables of docs/adaptation.md from the runs that measured them.

    python scripts/adaptation_tables.py RESULTS_DIR... [--probes FILE.jsonl...]

RESULTS_DIR: folders of ``misr compare ... --adapt S`` (per_volume.csv); for each model M with an adapted twin
M:aS, a row per dataset: volumes, PSNR and psnr_core of M and the change M:aS - M (mean, min, max over volumes), and on
how many volumes the adapted weights were used (a change other than 0). FILE.jsonl: lines of ``scripts/adaptation_probe.py``
(train on one mix of the scan's pairs, the protocol's PSNR at every fifth of the budget): the change of the truth and
of each kind of the scan's pairs, and whether the guard would have used those weights.
"""

from __future__ import annotations

import argparse
import csv
import json
from collections import defaultdict
from pathlib import Path

MARGIN_DB = 0.1


def compare_table(folder: Path) -> list[str]:
    rows = list(csv.DictReader((folder / "per_volume.csv").open()))
    by = {(r["dataset"], r["volume"], r["method"]): r for r in rows}
    lines = ["| dataset (volumes) | model | PSNR | psnr_core | adapted - shipped: PSNR mean (min, max) | psnr_core mean | "
             "adapted weights used | seconds per volume (adapted) |", "|---|---|---|---|---|---|---|---|"]
    groups = defaultdict(list)
    for (dataset, volume, method), r in by.items():
        if ":a" in method:
            base = method.rsplit(":a", 1)[0]
            groups[(dataset, base, method)].append((by[(dataset, volume, base)], r))
    for (dataset, base, method), pairs in groups.items():
        gain = [float(a["psnr"]) - float(b["psnr"]) for b, a in pairs]
        core = [float(a["psnr_core"]) - float(b["psnr_core"]) for b, a in pairs]
        used = sum(abs(g) > 1e-9 for g in gain)
        mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
        lines.append(f"| {dataset} ({len(pairs)}) | {base} | {mean([float(b['psnr']) for b, _ in pairs]):.2f} | "
                     f"{mean([float(b['psnr_core']) for b, _ in pairs]):.2f} | {mean(gain):+.3f} ({min(gain):+.3f}, "
                     f"{max(gain):+.3f}) | {mean(core):+.3f} | {used} of {len(pairs)} | "
                     f"{mean([float(a['seconds']) for _, a in pairs]):.0f} |")
    return lines


def probe_table(paths: list[Path]) -> list[str]:
    lines = ["| volume | model | trained on | seconds | iterations | truth | through pairs | in-plane pairs | guard |",
             "|---|---|---|---|---|---|---|---|---|"]
    for path in paths:
        for line in path.read_text().splitlines():
            run = json.loads(line)
            name = Path(run["volume"]).name.split(".nii")[0]
            for row in run["rows"]:
                checks = [row.get(f"{s}_gain") for s in ("through", "in_plane")]
                used = all(c is not None and c >= MARGIN_DB for c in checks)
                verdict = "used" if used else "kept shipped"
                if len(run["sources"]) == 2:  # both kinds trained on: no independent check (--adapt never does this)
                    verdict = f"no independent check ({'would use' if used else 'would keep shipped'})"
                lines.append(f"| {name} | {run['model']} | {'+'.join(run['sources'])} | {row['seconds']} | "
                             f"{row['iterations']} | {row['truth_gain']:+.3f} | {checks[0]:+.3f} | {checks[1]:+.3f} | "
                             f"{verdict} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", nargs="*", type=Path)
    parser.add_argument("--probes", nargs="*", type=Path, default=[])
    args = parser.parse_args()
    for folder in args.results:
        print(f"\n{folder}:\n" + "\n".join(compare_table(folder)))
    if args.probes:
        print("\n" + "\n".join(probe_table(args.probes)))


if __name__ == "__main__":
    main()
