"""What the oracle reports: a violation, and the step it was found at."""

from __future__ import annotations

from dataclasses import dataclass, field

from mteswap.model.origin import TagOrigin

KINDS = ("tag-check-fault", "data-corruption", "tag-storage-leak",
         "tag-storage-use-after-free", "invariant", "deadlock", "use-after-free", "stale-tags")


@dataclass(frozen=True)
class Violation:
    kind: str
    step: int
    op: str
    proc: str | None
    vma: str | None
    page: int | None
    detail: str
    # The name of the check that reported it (registry.py): its kind, or for an `invariant`
    # the invariant's name ("I8"). Kept out of to_dict, whose keys the JSON outputs fix.
    check: str = field(default="", compare=False)
    # tag-check faults: where the tags met came from (model/origin.py), as data; kept out of
    # to_dict too (the kernel comparison reads it in process)
    origin: TagOrigin | None = field(default=None, compare=False, repr=False)
    # Found in a parallel block (issue 14): the schedule (the lane of each atomic step, in
    # order) and the lane whose step found it. None otherwise; to_dict adds them when set.
    schedule: tuple[int, ...] | None = field(default=None, compare=False)
    thread: int | None = field(default=None, compare=False)

    def __post_init__(self):
        if not self.check:
            object.__setattr__(self, "check", self.kind)

    def to_dict(self) -> dict:
        """The violation as the scenario contract prints it."""
        out = {f: getattr(self, f) for f in ("kind", "step", "op", "proc", "vma", "page", "detail")}
        if self.schedule is not None:
            out["schedule"] = list(self.schedule)
            out["thread"] = self.thread
        return out

    def short(self) -> str:
        """`kind@step`, the form tables use."""
        return f"{self.kind}@{self.step}"


@dataclass(frozen=True)
class StepContext:
    step: int
    op: str
    proc: str | None = None
    vma: str | None = None
