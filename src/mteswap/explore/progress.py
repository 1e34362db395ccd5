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
    rate = st.distinct / st.elapsed if st.elapsed > 0 else 0.0
    return (f"depth {min(st.level + 1, st.max_depth)}/{st.max_depth}  states {st.distinct:,}  "
            f"transitions {st.transitions:,}  queue {len(st.frontier) - st.pos:,}  "
            f"{rate:,.0f} states/s  {st.elapsed:.1f}s")
