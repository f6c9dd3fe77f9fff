#!/usr/bin/env python3
"""Write the README's line about the test suite from the record of the run that produced it.

Usage: scripts/suite_readme.py RECORD.json [README.md]
RECORD.json is what `MISR_SUITE_RECORD=RECORD.json python -m pytest -q tests` writes (`.ci/run` does, in a clean clone);
it is copied to docs/suite.json and the README's "- **Tests**:" line is rewritten from it (tests/test_cli.py checks that
the two agree).
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def suite_line(record: dict) -> str:
    """The README's line for ``record``."""
    minutes, seconds = divmod(int(record["seconds"]), 60)
    return (f"- **Tests**: {record['passed']} passed, {record['failed']} failed, {record['skipped']} skipped in "
            f"{minutes} min {seconds} s on 2 CPU cores ({record['where']}; record: `docs/suite.json`); "
            f"{record['need_shared']} of them need `../shared` (the licensed MRI volumes, the DICOM series and the Model "
            "Zoo's metadata schema, beside the repository, not in it; the project's CI has them) and skip cleanly "
            "without it.")


def main(argv: list[str]) -> int:
    record_path = Path(argv[0])
    readme = Path(argv[1]) if len(argv) > 1 else ROOT / "README.md"
    record = json.loads(record_path.read_text())
    record.setdefault("where", "`.ci/run` in a clean clone")
    lines = readme.read_text().splitlines(keepends=True)
    index = next(i for i, line in enumerate(lines) if line.startswith("- **Tests**:"))
    end = next(j for j in range(index + 1, len(lines)) if not lines[j].startswith("  "))
    lines[index:end] = [suite_line(record) + "\n"]
    readme.write_text("".join(lines))
    target = ROOT / "docs" / "suite.json"
    if record_path.resolve() != target.resolve():
        target.write_text(json.dumps(record, indent=1) + "\n")
    print(f"{readme}: {suite_line(record)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
