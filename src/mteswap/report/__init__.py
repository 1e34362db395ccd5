"""`mteswap report` and the `--html` option of run, compare and check: one self-contained HTML
file per invocation (collect.py gathers each run step by step, html.py writes the page)."""

from __future__ import annotations

import os
import tempfile

from mteswap.report.collect import collect
from mteswap.report.html import page_html

__all__ = ["collect", "page_html", "write_html"]


def write_html(path: str, runs: list[dict], title: str, matrix: dict | None = None) -> int:
    """Write the page to `path` whole or not at all (a temporary file renamed over it), and
    return its size in bytes; OSError when it cannot be written."""
    text = page_html(runs, title, matrix).encode("utf-8")
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".mteswap-report-", suffix=".html", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(text)
        os.chmod(tmp, 0o666 & ~_umask())     # as open() would create it (mkstemp: 0600)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return len(text)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
