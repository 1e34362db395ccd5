"""The scenarios shipped with mteswap (src/mteswap/scenarios/, also at scenarios/ in the repo)."""

from __future__ import annotations

from pathlib import Path

BUNDLED_DIR = Path(__file__).parent / "scenarios"


def bundled_files() -> list[Path]:
    return sorted(BUNDLED_DIR.glob("*.yaml"))
