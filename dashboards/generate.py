"""Regenerate every generated file of the observability bundle, or check that none is stale.

    python -m dashboards.generate           # write dashboards/*.json and alerts/*.yml
    python -m dashboards.generate --check   # exit 1, naming each stale file, if any would change

The dashboards (grafanalib) and the alert rules share the knobs of ``alerts/config.py``, so they
are generated together.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from alerts import rules
from grafanalib._gen import DashboardEncoder

from . import dependency, overview

ROOT = Path(__file__).resolve().parent.parent

DASHBOARDS = {
    "resilience-overview.json": overview.build,
    "resilience-dependency.json": dependency.build,
}


def render() -> dict[Path, str]:
    """Every generated file, by path, with the text it must have."""
    files = {
        ROOT / "dashboards" / name: json.dumps(
            build().to_json_data(), cls=DashboardEncoder, indent=2, sort_keys=True
        )
        + "\n"
        for name, build in DASHBOARDS.items()
    }
    files.update({ROOT / "alerts" / name: text for name, text in rules.render().items()})
    return files


def stale(files: dict[Path, str]) -> list[Path]:
    return [p for p, text in files.items() if not p.exists() or p.read_text() != text]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dashboards.generate", description=__doc__)
    parser.add_argument(
        "--check", action="store_true", help="write nothing; fail if a file would change"
    )
    args = parser.parse_args(argv)
    files = render()
    if args.check:
        outdated = stale(files)
        for path in outdated:
            print(
                f"{path.relative_to(ROOT)} is stale: regenerating it changes it. "
                "Run `python -m dashboards.generate` (or `make dashboards`) and commit the result.",
                file=sys.stderr,
            )
        if outdated:
            return 1
        print(f"{len(files)} generated files are up to date.")
        return 0
    for path, text in files.items():
        path.write_text(text)
        print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
