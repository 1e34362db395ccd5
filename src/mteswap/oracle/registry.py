"""Every check the oracle makes, by name: how it is run, and how to switch one off.

A check is either an *access* check, made by the oracle on every access the program makes
(`tag-check-fault`, `data-corruption`, `stale-tags`), or a *state* check, run on the machine after every
step (the tag-storage checks and the invariants of kernel-semantics.md §5). A violation
carries the name of the check that found it (`Violation.check`): its kind, or for an
`invariant` the invariant's name, which also starts its detail ("I8: ...").

    check_names()                          # every name, in the order checks run
    Oracle(disabled={"I7"})                # an oracle that skips I7
    registry.DISABLED = frozenset({"I7"})  # ... and so every Oracle made from now on

Not checks of their own, because no single state shows them (`NOT_STATE_CHECKS`):

- I3 (restore before present: `arch_swap_restore` before `set_ptes`) — when broken,
  `mte_sync_tags` zeroes the page first and the restore becomes a no-op; the program then
  meets zero tags: a `tag-check-fault`.
- I4 (restore before release: before `swap_free_nr`/`swapcache_clear`) — when broken, the
  restore reads a buffer whose slot is already free: `tag-storage-use-after-free` (or, once
  the buffer is gone, a `tag-check-fault`).
- I6 (idempotent restore: only pages whose `try_page_mte_tagging` succeeds) — when broken,
  a later restore overwrites tags the program has changed since: a `tag-check-fault`.
- I11 (per-page granularity) — a property of a design's data structures rather than of a
  state; a design that keeps tagged-ness per folio shows it as tag-check faults (stale or
  lost tags of single pages) or as I1 (a page called tagged whose tags nobody set).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable, Iterable

from mteswap.oracle import invariants as inv
from mteswap.oracle.tag_storage import tag_storage_leaks, tag_storage_use_after_free


@dataclass(frozen=True)
class Check:
    name: str        # what `Violation.check` says, and what `disabled` takes
    kind: str        # `Violation.kind` of what it reports
    doc: str         # one line: what is checked
    # A state check: run(m) yields a detail per problem (an invariant) or (detail, key) (the
    # tag-storage checks); `reported` makes what the oracle records of it. None for an access
    # check. The invariants' generators are run as they are: no wrapper per check and state.
    run: Callable | None = None

    def reported(self, item) -> tuple[str, tuple | None]:
        """(detail, key) of one problem run(m) yielded: an invariant's detail prefixed with
        its name and reported once (by that key); the others as they come (key None: every
        time it is seen)."""
        if self.kind == "invariant":
            return f"{self.name}: {item}", ("invariant", self.name, item)
        return item


def _invariant(name: str, fn: Callable) -> Check:
    """A state check from an invariant function of invariants.py (whose docstring's first
    line says what is checked): it yields details, which the oracle prefixes with the name
    and reports once each (`Check.reported`)."""
    return Check(name, "invariant", fn.__doc__.split("\n")[0].rstrip("."), fn)


_ALL = (
    Check("tag-check-fault", "tag-check-fault",
          "an access through a tagged PTE meets allocation tags other than the program's"),
    Check("data-corruption", "data-corruption",
          "a read returns another value than the one the program last wrote"),
    Check("stale-tags", "stale-tags",
          "an access meets the tags the program expects, but of another write (their "
          "write-generation ghost)"),
    Check("tag-storage-use-after-free", "tag-storage-use-after-free",
          "a tag buffer was read while its slot had neither a reference nor a cache pin",
          tag_storage_use_after_free),
    Check("tag-storage-leak", "tag-storage-leak",
          "saved tags kept for a free slot, after swapoff or after the last process exited",
          tag_storage_leaks),
    *(_invariant(name, fn) for name, fn in inv.INVARIANTS),
)

CHECKS: dict[str, Check] = {c.name: c for c in _ALL}
ACCESS_CHECKS = ("tag-check-fault", "data-corruption", "stale-tags")
STATE_CHECKS: tuple[Check, ...] = tuple(c for c in _ALL if c.run is not None)

NOT_STATE_CHECKS = {
    "I3": "restore before present: shows as a tag-check-fault (mte_sync_tags zeroed the page)",
    "I4": "restore before release: shows as tag-storage-use-after-free or a tag-check-fault",
    "I6": "idempotent restore: shows as a tag-check-fault (retagged page overwritten)",
    "I11": "per-page granularity: a design property; shows as tag-check faults or I1",
}

# The checks every Oracle made without an explicit `disabled` skips (none by default; the
# mutation test switches one off at a time through it).
DISABLED: frozenset[str] = frozenset()

# Whether every Oracle made without an explicit `full_check` runs each state check over the
# whole machine after every step instead of its scoped form (oracle/scoped.py): a debug
# option (`--full-check`, or MTESWAP_FULL_CHECK=1 in the environment, which worker
# processes inherit). Both report the same violations (tests/test_scoped_check.py).
FULL_CHECK: bool = os.environ.get("MTESWAP_FULL_CHECK", "") not in ("", "0")


def set_full_check(on: bool) -> None:
    """Make every Oracle from now on, in this process and in workers it starts, run the full
    state check (`--full-check`)."""
    global FULL_CHECK
    FULL_CHECK = on
    if on:
        os.environ["MTESWAP_FULL_CHECK"] = "1"
    else:
        os.environ.pop("MTESWAP_FULL_CHECK", None)


def check_names() -> tuple[str, ...]:
    """Every check's name, in the order the oracle runs them."""
    return tuple(CHECKS)


def resolve_disabled(disabled: Iterable[str] | None) -> frozenset[str]:
    """The set to skip: `disabled`, or DISABLED when None. An unknown name is a ValueError."""
    names = DISABLED if disabled is None else frozenset(disabled)
    unknown = sorted(names - CHECKS.keys())
    if unknown:
        raise ValueError(f"unknown oracle check(s) {', '.join(unknown)}; "
                         f"known: {', '.join(CHECKS)}")
    return names
