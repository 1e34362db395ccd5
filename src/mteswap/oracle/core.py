"""The oracle: compares what the program observes with what it expects (program.py), and
runs the registry's state checks on the machine after every step (registry.py)."""

from __future__ import annotations

from array import array
from typing import Callable, Iterable

from mteswap.model import tags as T
from mteswap.oracle import registry, scoped
from mteswap.oracle.origin import describe_origin
from mteswap.oracle.program import Expectation, ProgramView
from mteswap.oracle.violation import StepContext, Violation


class Oracle:
    """Collects violations. Each distinct state-level problem is reported once. `disabled`
    names checks of the registry to skip (default: `registry.DISABLED`, normally none).
    `full_check` (default: `registry.FULL_CHECK`, the debug option `--full-check`) runs every
    state check over the whole machine after every step instead of its scoped form
    (oracle/scoped.py), which reports the same violations."""

    def __init__(self, disabled: Iterable[str] | None = None, full_check: bool | None = None):
        self.expect = Expectation()
        self.violations: list[Violation] = []
        self._reported: set = set()
        self.full_check = registry.FULL_CHECK if full_check is None else full_check
        self._seen = None        # scoped.Seen of the last check; None: the next one is full
        self._set_disabled(registry.resolve_disabled(disabled))

    def _set_disabled(self, disabled: frozenset[str]) -> None:
        self.disabled = disabled
        self._tags_on = "tag-check-fault" not in disabled
        self._values_on = "data-corruption" not in disabled
        self.gens_on = "stale-tags" not in disabled
        self._state_checks = tuple((c.run, scoped.SCOPED.get(c.name), c)
                                   for c in registry.STATE_CHECKS if c.name not in disabled)
        # the checks with no scoped form: all that can find anything when a step wrote
        # nothing the others read (scoped.Touched.nothing)
        self._unscoped = tuple(e for e in self._state_checks if e[1] is None)

    def clone(self) -> "Oracle":
        """An independent copy (for `Runner.clone`): the program's view, violations so far,
        the problems already reported and the checks skipped."""
        new = Oracle.__new__(Oracle)
        new.expect = Expectation.__new__(Expectation)
        new.expect.view = {pid: ProgramView(v) for pid, v in self.expect.view.items()}
        new.violations = list(self.violations)
        new._reported = set(self._reported)
        new.disabled, new._tags_on, new._values_on, new._state_checks, new._unscoped = \
            self.disabled, self._tags_on, self._values_on, self._state_checks, self._unscoped
        new.full_check, new._seen = self.full_check, self._seen                 # immutable
        new.gens_on = self.gens_on
        return new

    # -- what the program observes --------------------------------------------------------
    def check_tags(self, ctx: StepContext, page: int, pid: int, vpn: int, met: int | None,
                   origin_of: Callable[[int], object]) -> None:
        """`met`: the allocation tags the access met (None through an untagged mapping).
        `origin_of(vpn)` gives the page's tag origin; it is called only for a violation (a
        hot path at scale: most accesses match)."""
        if met is None or not self._tags_on:
            return
        view = self.expect.view[pid]
        want = view.tags[vpn] if vpn < len(view.present) else 0   # absent pages hold 0
        if want == met:
            return
        g, exp, found = T.first_difference(want, met)
        where = "" if g == 0 else f" (granule {g})"
        origin = origin_of(vpn)
        self._add("tag-check-fault", "tag-check-fault", ctx, page,
                  f"expected tag {exp}, found {T.tag_text(found)}{where}: {describe_origin(origin)}", origin)

    def check_tags_span(self, ctx: StepContext, page: int, pid: int, vpn: int, mets: list,
                        origin_of: Callable[[int], object], gens=None) -> None:
        """check_tags for pages page, page + 1, ... at vpn, vpn + 1, ...: one comparison of
        the lists when every tag matches, else page by page; with `gens` (the tags' write
        generations met, uaccess.user_tag_gens) also check_gen, page by page after each
        page's check_tags (the two never both fire on one page), so that the order of what
        they find does not depend on how the pages were split into spans."""
        view = self.expect.view[pid]
        n = len(mets)
        if mets == view.tags[vpn:vpn + n] and (gens is None or gens == view.gens[vpn:vpn + n]):
            return
        for k, met in enumerate(mets):
            self.check_tags(ctx, page + k, pid, vpn + k, met, origin_of)
            if gens is not None:
                self.check_gen(ctx, page + k, pid, vpn + k, met, gens[k], origin_of)

    def check_values_span(self, ctx: StepContext, page: int, pid: int, vpn: int,
                          data) -> None:
        """check_value for a span of pages, as check_tags_span (`data` a list or an array)."""
        want = self.expect.view[pid].values[vpn:vpn + len(data)]
        if (data if isinstance(data, array) else array("q", data)) == want:
            return
        for k, value in enumerate(data):
            self.check_value(ctx, page + k, pid, vpn + k, value)

    def check_value(self, ctx: StepContext, page: int, pid: int, vpn: int, data: int) -> None:
        if not self._values_on:
            return
        view = self.expect.view[pid]
        want = view.values[vpn] if vpn < len(view.present) else 0   # absent pages hold 0
        if data != want:
            self._add("data-corruption", "data-corruption", ctx, page,
                      f"expected value {want:#x}, found {data:#x}")

    def check_gen(self, ctx: StepContext, page: int, pid: int, vpn: int, met: int | None,
                  gen: int, origin_of: Callable[[int], object]) -> None:
        """`stale-tags`: the access met, through a tagged PTE, the tags the program expects
        (`met`), but their write-generation ghost `gen` is not the one the program set:
        equal tags of another write (or zeroed by the kernel) met this page. Tags that
        differ are a tag-check-fault (check_tags), not this."""
        view = self.expect.view[pid]
        if met is None or vpn >= len(view.present):
            return
        want = view.gens[vpn]
        if gen == want or met != view.tags[vpn]:
            return
        origin = origin_of(vpn)
        self._add("stale-tags", "stale-tags", ctx, page,
                  f"tags {T.describe(met)} of generation {gen_text(gen)} met where the "
                  f"program set them at generation {gen_text(want)}: "
                  f"{describe_origin(origin)}", origin)

    # -- what the kernel state shows --------------------------------------------------------
    def check_state(self, ctx: StepContext, m, skip: frozenset = frozenset()) -> None:
        """Every state check of the registry not disabled (nor named in `skip`: between two
        atomic steps of a parallel block, the checks that hold only between system calls),
        in registry order: each in its scoped form (what the step wrote, oracle/scoped.py),
        or in full with `full_check`, for an oracle's first check, inside a parallel block
        (lanes mid-path) and after a step where some check did not run."""
        full = self.full_check or skip or m.sched is not None or self._seen is None
        touched = None if full else scoped.Touched(m, self._seen)
        checks = self._state_checks
        if touched is not None and touched.nothing and m.flags_per_page and not m.swap.cache:
            # (a per-folio design's I1, I1-lock and I2 run in full; I8 and I9 read the swap
            # cache's folios, whose dirty bit no log follows)
            checks = self._unscoped
        for run, scoped_run, check in checks:
            if full:
                if skip and check.name in skip:
                    continue
                items = run(m)
            else:
                items = run(m) if scoped_run is None else scoped_run(m, touched)
            for item in items:
                detail, key = check.reported(item)
                if key is None or key not in self._reported:
                    if key is not None:
                        self._reported.add(key)
                    self._add(check.kind, check.name, ctx, None, detail)
        # the next check may be scoped only if every check ran on this state
        if touched is not None:
            self._seen = touched.now
        else:
            self._seen = None if self.full_check or skip or m.sched is not None \
                else scoped.seen(m)
        scoped.forget_writes(m)
        m.tag_reads.clear()      # read by the use-after-free check: each step's reads once

    def skip_state(self, m) -> None:
        """No state check after this step (a runner without them, an interleaving stopped
        mid-block): forget its writes and reads; the next check, if any, is full."""
        scoped.forget_writes(m)
        m.tag_reads.clear()
        self._seen = None

    def _add(self, kind: str, check: str, ctx: StepContext, page: int | None,
             detail: str, origin=None) -> None:
        self.violations.append(Violation(kind, ctx.step, ctx.op, ctx.proc, ctx.vma, page,
                                         detail, check, origin))



def gen_text(gen: int) -> str:
    """A tag write generation as details show it: the value its write stored in the page
    (`0x400001`: step 4's, page 0, as data values read), or `0 (kernel-zeroed)`."""
    return f"{gen:#x}" if gen else "0 (kernel-zeroed)"
