"""Live progress on stderr: a rich status line on a terminal, plain lines every few seconds
otherwise (never silent for more than `every` seconds while chunks complete)."""

from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, enabled: bool = True, every: float = 2.0, stream=None):
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.every = every
        self.last = 0.0
        self.live = None
        if enabled and getattr(self.stream, "isatty", lambda: False)():
            from rich.console import Console
            from rich.live import Live
            self.live = Live("", console=Console(file=self.stream), refresh_per_second=4,
                             transient=True)
            self.live.start()

    def update(self, text: str, force: bool = False) -> None:
        if not self.enabled:
            return
        if self.live is not None:
            self.live.update(text)
            return
        now = time.monotonic()
        if force or now - self.last >= self.every:
            self.last = now
            print(f"mteswap check: {text}", file=self.stream, flush=True)

    def close(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None


def bfs_line(st) -> str:
    """The live line: the level being expanded, how far, and when it should end at the rate
    so far in this level (no estimate before the level's first chunk)."""
    rate = st.distinct / st.elapsed if st.elapsed > 0 else 0.0
    depth = min(st.level + 1, st.max_depth)
    parents, done = len(st.frontier), st.pos
    spent = st.elapsed - getattr(st, "level_started", 0.0)
    eta = (f", level ends in ~{_seconds(spent / done * (parents - done))}"
           if 0 < done < parents and spent > 0 else "")
    return (f"depth {depth}/{st.max_depth}: {done:,}/{parents:,} states expanded{eta}  "
            f"states {st.distinct:,}  transitions {st.transitions:,}  "
            f"{rate:,.0f} states/s  {st.elapsed:.1f}s")


def _seconds(s: float) -> str:
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.0f} min" if s < 7200 else f"{s / 3600:.1f} h"
