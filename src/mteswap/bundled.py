"""The scenarios shipped with mteswap (src/mteswap/scenarios/, also at scenarios/ in the repo)."""

from __future__ import annotations

from pathlib import Path

BUNDLED_DIR = Path(__file__).parent / "scenarios"


def bundled_files() -> list[Path]:
    return sorted(BUNDLED_DIR.glob("*.yaml"))


PARALLEL_DIR = BUNDLED_DIR / "parallel"


def parallel_files() -> list[Path]:
    """The bundled scenarios with `parallel` blocks (issue 14). Kept apart from
    `bundled_files`: the kernel export, the cost model and `check` take sequential files."""
    return sorted(PARALLEL_DIR.glob("*.yaml"))
