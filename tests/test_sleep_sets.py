"""Sleep sets over the sequential alphabet (explore/footprint.py, explore/bfs.py;
docs/checking.md "Independence (sleep sets) over the sequential alphabet").

* Commutation: on every preset, for states reached at small depth and every pair of actions
  the footprints call independent there, both orders apply and give the same canonical state
  and the same violations; a deliberately wrong footprint (no allocator cells, no frame
  cells) is caught by the same check.
* Differential: the search with and without sleep sets gives the same verdict (violation
  kind, property, trace length), the same distinct states, no more transitions, and the same
  sometimes properties reached at the same depths, on every preset; the same result on one
  worker and two.
"""

from __future__ import annotations

import random

import pytest

from helpers import check
from mteswap.explore import footprint as fpm
from mteswap.explore.alphabet import Problem, action_text
from mteswap.explore.bfs import new_bfs, run_bfs, serial_mapper
from mteswap.explore.model import get_model


def _states(model, depth: int) -> list:
    """Every state of depth < `depth` reached by sequential steps (unreduced BFS, first trace
    reaching each). Parallel blocks are GLOBAL: no pair with one is ever independent."""
    seq = [a for a, s in enumerate(model.alpha.base_steps) if s.op != "parallel"]
    root = model.init()
    frontier, seen, out = [((), root)], {model.fingerprint(root)}, []
    for _ in range(depth):
        nxt = []
        for trace, s in frontier:
            out.append((trace, s))
            enabled = set(model.actions(s))
            for a in seq:
                c = model.step(s, a) if a in enabled else None
                if c is not None and model.failed_property(c) is None:
                    fp = model.fingerprint(c)
                    if fp not in seen:
                        seen.add(fp)
                        nxt.append((trace + (a,), c))
        frontier = nxt
    return out


ACCESS_KINDS = ("tag-check-fault", "data-corruption", "stale-tags")


def _violations(r) -> list:
    """Per access: kind, process and page; per state check (reported after whichever of the
    two steps made it true): kind, check and detail."""
    return sorted((v.kind, v.proc, str(v.page)) if v.kind in ACCESS_KINDS
                  else (v.kind, v.check, v.detail) for v in r.violations)


def commutation_failures(problem: Problem, depth: int, sample: int, seed: int = 0):
    """(failures, independent pairs checked): for `sample` states of depth < `depth` (fixed
    seed) and every pair (a, b) the footprints call independent there, the failures of
    s·a·b == s·b·a (both applying, equal fingerprints, equal violations)."""
    model = get_model(problem)
    states = _states(model, depth)
    picked = random.Random(seed).sample(states, min(sample, len(states)))
    failures, checked = [], 0
    for trace, s in picked:
        info = fpm.Parent(s)
        kids, feet = {}, {}
        for a in model.actions(s):
            step = model.alpha.base_steps[a]
            c = None if step.op in fpm.GLOBAL_OPS else model.step(s, a)
            if c is not None:
                kids[a], feet[a] = c, info.measure(step, c)
        acts = sorted(kids)
        for i, a in enumerate(acts):
            for b in acts[i + 1:]:
                if not fpm.independent(feet[a], feet[b]):
                    continue
                checked += 1
                ab, ba = model.step(kids[a], b), model.step(kids[b], a)
                ok = (ab is not None and ba is not None
                      and model.fingerprint(ab) == model.fingerprint(ba)
                      and _violations(ab) == _violations(ba))
                if not ok:
                    failures.append((trace, action_text(model.alpha.actions[a]),
                                     action_text(model.alpha.actions[b])))
    return failures, checked


COMMUTATION = [("small", "merged-split-fix", 3, 12), ("small", "merged", 3, 10),
               ("small", "folio-marker", 3, 8), ("small", "rfc-v1", 3, 8),
               ("zram", "rfc-v2", 3, 12), ("zram", "per-folio-flag", 3, 8),
               ("thread", "merged", 3, 4),
               ("parallel-zram", "merged", 5, 6), ("parallel-ssd", "merged", 5, 6)]


@pytest.mark.parametrize("model,design,depth,sample", COMMUTATION,
                         ids=lambda x: str(x))
def test_independent_actions_commute(model, design, depth, sample):
    failures, checked = commutation_failures(Problem(design=design, model=model), depth, sample)
    assert failures == []
    assert checked > 0          # not vacuous: some pairs are independent on every preset


def _drop(cells):
    def wrap(fn):
        def inner(*args, **kw):
            got = fn(*args, **kw)
            return type(got)(c for c in got if c >> 48 not in cells)
        return inner
    return wrap


@pytest.mark.parametrize("dropped", [
    pytest.param({fpm.F >> 48, fpm.V >> 48}, id="no-frames-no-view"),
    pytest.param({fpm.T >> 48, fpm.TALL >> 48}, id="no-ptes"),
])
def test_a_wrong_footprint_is_caught(monkeypatch, dropped):
    """The commutation check is strong enough: a footprint function that forgets a kind of
    cell calls some dependent pair independent, and running both orders shows it (e.g.
    without frames and view entries, `write A 0 tag=distinct` and `write A 0 tag=5` end with
    different tags). Cells overlap on purpose (a write to a page writes its frame and its
    view entry), so forgetting one kind alone is often still covered by another; forgetting
    only the allocator cells is not caught at this depth (an allocation writes the lowest
    free frames and slots it takes, so two that would take the same one conflict there
    anyway; docs/checking.md), and they stay, as the plainly sound declaration."""
    monkeypatch.setattr(fpm, "written_cells", _drop(dropped)(fpm.written_cells))
    monkeypatch.setattr(fpm.Parent, "_closure", _drop(dropped)(fpm.Parent._closure))
    monkeypatch.setattr(fpm.Parent, "_access_reads", _drop(dropped)(fpm.Parent._access_reads))
    failures, _ = commutation_failures(Problem(design="merged-split-fix", model="zram"), 3, 30)
    assert failures


# -- reduced against unreduced search ----------------------------------------------------------

def _search(problem: Problem, depth: int, por: bool) -> dict:
    st = new_bfs(problem, depth, por=por)
    run_bfs(st, serial_mapper)
    v = st.violation
    return {"states": st.distinct, "transitions": st.transitions, "depth": st.depth_reached,
            "violation": v and (v["property"], v["violation"]["kind"], len(v["trace"])),
            "reached": {name: len(t) for name, t in st.reached.items()}}


def _compare(model: str, design: str, depth: int, **kw) -> tuple[dict, dict]:
    problem = Problem(design=design, model=model, **kw)
    full, red = _search(problem, depth, False), _search(problem, depth, True)
    assert red["violation"] == full["violation"]
    assert red["states"] == full["states"]
    assert red["transitions"] <= full["transitions"]
    assert red["reached"] == full["reached"] and red["depth"] == full["depth"]
    return full, red


DIFFERENTIAL = [("small", "merged-split-fix", 3), ("small", "per-folio-flag", 3),
                ("small", "rfc-v1", 3), ("small", "merged", 3), ("small", "folio-marker", 3),
                ("small", "split-before-swap", 3), ("zram", "rfc-v2", 3),
                ("zram", "merged-split-fix", 3), ("thread", "merged", 2),
                ("parallel-ssd", "merged", 4), ("parallel-zram", "merged", 2)]


@pytest.mark.parametrize("model,design,depth", DIFFERENTIAL, ids=lambda x: str(x))
def test_reduced_search_keeps_states_and_verdicts(model, design, depth):
    _compare(model, design, depth)


def test_reduced_search_keeps_a_violation_and_saves_transitions():
    """rfc-v1 fails at depth 3 (I8) either way; merged-split-fix's depth-3 space is the same
    1,583 states with fewer transitions."""
    full, red = _compare("small", "rfc-v1", 3)
    assert full["violation"] == ("no invariant", "invariant", 3)
    full, red = _compare("small", "merged-split-fix", 3)
    assert red["transitions"] < full["transitions"]


@pytest.mark.slow
def test_reduced_search_keeps_a_parallel_violation():
    """A parallel block is GLOBAL: the block verdicts are those of the unreduced search."""
    full, _ = _compare("parallel-zram", "merged", 3, reverts=("2799e77529c2",))
    assert full["violation"][1] == "use-after-free"


SLOW = [("small", "merged", 4), ("small", "split-before-swap", 4), ("small", "folio-marker", 4),
        ("small", "merged-split-fix", 4), ("zram", "rfc-v2", 4), ("zram", "rfc-v3", 4),
        ("thread", "merged", 3), ("parallel-zram", "merged", 3)]


@pytest.mark.slow
@pytest.mark.parametrize("model,design,depth", SLOW, ids=lambda x: str(x))
def test_reduced_search_keeps_states_and_verdicts_deeper(model, design, depth):
    _compare(model, design, depth)


def test_reduced_search_same_on_two_workers(tmp_path):
    one, _ = check(tmp_path, design="merged-split-fix", depth=3, workers=1)
    two, _ = check(tmp_path, design="merged-split-fix", depth=3, workers=2)
    for s in (one, two):
        s.pop("seconds"), s.pop("states_per_second")
    assert one == two and one["sleep_sets"] is True


def test_sleep_sets_off_by_option_and_without_symmetry(tmp_path):
    """--no-por turns them off; --no-symmetry too (the two orders of independent steps are
    the same state only up to the renaming of written values)."""
    on, _ = check(tmp_path, design="merged-split-fix", depth=3)
    off, _ = check(tmp_path, design="merged-split-fix", depth=3, por=False)
    plain, _ = check(tmp_path, design="merged-split-fix", depth=3, reduce=False)
    assert (on["sleep_sets"], off["sleep_sets"], plain["sleep_sets"]) == (True, False, False)
    assert on["distinct_states"] == off["distinct_states"]
    assert on["transitions"] < off["transitions"]


def test_reduced_search_same_for_any_chunk_size():
    """Sleep sets of a state reached from several chunks are intersected in merge order: the
    counts and sleep sets do not depend on how the frontier is cut."""
    got = []
    for chunk in (48, 5):
        st = new_bfs(Problem(design="merged-split-fix"), 3, por=True)
        st.chunk = chunk
        run_bfs(st, serial_mapper)
        got.append((st.distinct, st.transitions, st.reached))
    assert got[0] == got[1]


def test_no_por_on_the_command_line(tmp_path):
    import json

    import typer
    from typer.testing import CliRunner

    from mteswap.explore.cli import check_command
    check_app = typer.Typer(add_completion=False)
    check_app.command()(check_command)
    got = {}
    for extra in ([], ["--no-por"]):
        res = CliRunner().invoke(check_app, ["--design", "merged-split-fix", "--depth", "3",
                                             "--workers", "1", "--json",
                                             "--out", str(tmp_path)] + extra)
        assert res.exit_code == 0, res.output
        s = json.loads(res.stdout)
        got[bool(extra)] = (s["sleep_sets"], s["distinct_states"], s["transitions"])
    assert got[False][0] is True and got[True][0] is False
    assert got[False][1] == got[True][1] == 1583 and got[False][2] < got[True][2] == 4707
