"""`mteswap check` without the command-line layer: run a search from options, write the
counterexample, return the JSON summary and the exit status."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from mteswap.explore import checkpoint as ckpt
from mteswap.explore.alphabet import (BadInput, Problem, action_text, parse_set, step_action,
                                      validate_problem)
from mteswap.explore.bfs import new_bfs, run_bfs
from mteswap.explore.itf import write_counterexample
from mteswap.explore.model import design_maker, get_model
from mteswap.explore.parallel import PoolMapper, SerialMapper, default_workers
from mteswap.explore.progress import Progress, bfs_line
from mteswap.explore.shrink import first_violation, shrink


@dataclass
class Options:
    design: str = "merged"
    model: str = "small"
    depth: int = 6
    random: bool = False
    steps: int = 40               # random: length of each walk
    time: float | None = None     # random: seconds (default 60); exhaustive: none
    walks: int | None = None      # random: number of walks (default: until --time)
    seed: int = 0
    set: list = field(default_factory=list)
    ops: str | None = None
    out: str = "mteswap-out"
    workers: int | None = None
    scheduler: str | None = None
    checkpoint: str | None = None
    resume: str | None = None
    reduce: bool = True
    progress: bool = True
    checkpoint_every: float = 5.0
    time_limit: float | None = None   # exhaustive: stop cleanly after this many seconds
    revert: list = field(default_factory=list)   # fixes taken out (--revert COMMIT)
    por: bool = True              # exhaustive: sleep sets (footprint.py; needs `reduce`)


def make_problem(o: Options) -> Problem:
    ops = None
    if o.ops is not None:
        ops = tuple(x.strip() for x in o.ops.split(",") if x.strip())
    overrides = tuple(sorted(parse_set(o.set).items(), key=lambda kv: kv[0]))
    overrides = tuple((k, tuple(v) if isinstance(v, list) else v) for k, v in overrides)
    pr = Problem(design=o.design, model=o.model, overrides=overrides, ops=ops, reduce=o.reduce,
                 reverts=tuple(sorted(set(o.revert))))
    validate_problem(pr)
    design_maker(o.design)
    return pr


def _mapper(o: Options, problem: Problem):
    if o.scheduler:
        from mteswap.explore.distributed import DaskMapper
        return DaskMapper(o.scheduler, problem)
    workers = o.workers if o.workers is not None else default_workers()
    if workers < 1:
        raise BadInput(f"--workers: expected at least 1, got {workers}")
    return SerialMapper() if workers == 1 else PoolMapper(workers, problem)


def run_check(o: Options) -> tuple[dict, int]:
    """(summary, exit status). BadInput for bad options (exit 2, raised to the caller)."""
    resumed = None
    if o.resume:
        try:
            resumed = ckpt.load(o.resume)
        except (OSError, ValueError, EOFError) as err:
            raise BadInput(f"--resume: cannot read checkpoint: {err}") from None
        saved = resumed["options"]
        for k in ("design", "model", "depth", "random", "steps", "walks", "seed", "set", "ops",
                  "reduce", "time", "por"):
            setattr(o, k, saved[k])
        if o.checkpoint is None:
            o.checkpoint = o.resume
    if o.depth < 1 and not o.random:
        raise BadInput(f"--depth: expected at least 1, got {o.depth}")
    if o.random and o.steps < 1:
        raise BadInput(f"--steps: expected at least 1, got {o.steps}")
    problem = make_problem(o)
    ctx = get_model(problem)
    saved_opts = {k: getattr(o, k) for k in ("design", "model", "depth", "random", "steps",
                                             "walks", "seed", "set", "ops", "reduce", "time",
                                             "por")}
    mapper = _mapper(o, problem)
    progress = Progress(o.progress)
    try:
        if o.random:
            summary = _random(o, problem, ctx, mapper, progress, resumed, saved_opts)
        else:
            summary = _exhaustive(o, problem, ctx, mapper, progress, resumed, saved_opts)
    finally:
        progress.close()
        mapper.close()
    return summary, (1 if summary["violation"] else 0)


def _exhaustive(o, problem, ctx, mapper, progress, resumed, saved_opts) -> dict:
    st = resumed["state"] if resumed else new_bfs(problem, o.depth, por=o.por)
    last = [time.monotonic()]

    def on_chunk(s):
        if o.checkpoint and time.monotonic() - last[0] >= o.checkpoint_every:
            ckpt.save(o.checkpoint, "bfs", s, saved_opts)
            last[0] = time.monotonic()

    if o.time_limit is not None and o.time_limit <= 0:
        raise BadInput(f"--time-limit: expected a positive number of seconds, got {o.time_limit}")
    run_bfs(st, mapper.chunks, lambda s: progress.update(bfs_line(s)), on_chunk, o.time_limit)
    if o.checkpoint:
        ckpt.save(o.checkpoint, "bfs", st, saved_opts)
    progress.update(bfs_line(st), force=True)
    summary = {"design": ctx.design_name, "model": problem.model, "mode": "exhaustive",
               "depth": st.depth_reached, "max_depth": st.max_depth,
               "complete": st.violation is None and not st.frontier and st.depth_reached < st.max_depth,
               "time_limit": o.time_limit, "stopped": st.stopped,
               "partial_depth": None if not st.stopped else
               {"depth": st.level + 1, "expanded": st.pos, "states": len(st.frontier)},
               "distinct_states": st.distinct, "transitions": st.transitions,
               "sleep_sets": st.por,
               "seconds": round(st.elapsed, 3),
               "states_per_second": round(st.distinct / st.elapsed, 1) if st.elapsed else None,
               "violation": None,
               "sometimes": sometimes_summary(ctx, st.reached)}
    if st.violation:
        actions = [ctx.alpha.actions[a] for a in st.violation["trace"]]
        files = write_counterexample(o.out, problem, ctx.make_design, ctx.design_name, actions,
                                     st.violation["violation"],
                                     f"exhaustive search, depth {st.depth_reached}: a shortest trace")
        summary["violation"] = dict(st.violation["violation"], property=st.violation["property"],
                                    trace=[action_text(a) for a in actions], files=files)
    return summary


def sometimes_summary(model, reached: dict) -> dict:
    """Each sometimes property, in the model's order: {"reached": bool, "trace": [...] | None}
    (the first trace found reaching it, as one-line actions)."""
    out = {}
    for p in model.sometimes():
        trace = reached.get(p.name)
        out[p.name] = {"reached": trace is not None,
                       "trace": None if trace is None
                       else [action_text(model.alpha.actions[a]) for a in trace]}
    return out


@dataclass
class RandomState:
    next_walk: int = 0
    walks: int = 0
    steps: int = 0
    found: dict | None = None          # {"walk", "trace", "property", "violation"}
    elapsed: float = 0.0
    reached: dict = field(default_factory=dict)   # sometimes property -> trace (lowest walk)


def _random(o, problem, ctx, mapper, progress, resumed, saved_opts) -> dict:
    rs: RandomState = resumed["state"] if resumed else RandomState()
    budget = o.time if o.time is not None else (None if o.walks else 60.0)
    t0 = time.perf_counter() - rs.elapsed
    last = time.monotonic()
    batch = 8
    while rs.found is None:
        if o.walks is not None and rs.next_walk >= o.walks:
            break
        if budget is not None and time.perf_counter() - t0 >= budget:
            break
        # a round of batches, in walk order
        stop = rs.next_walk + batch * 16
        if o.walks is not None:
            stop = min(stop, o.walks)
        batches = [list(range(w, min(w + batch, stop))) for w in range(rs.next_walk, stop, batch)]
        results = mapper.walks(problem, o.seed, batches, o.steps)
        try:
            for b, res in zip(batches, results):
                for wr in res:
                    rs.walks += 1
                    rs.steps += wr.steps
                    for name, trace in wr.reached.items():
                        rs.reached.setdefault(name, trace)
                    if wr.violation and rs.found is None:
                        rs.found = {"walk": wr.walk, "trace": wr.trace, "property": wr.prop,
                                    "violation": wr.violation}
                rs.next_walk = b[-1] + 1
                rs.elapsed = time.perf_counter() - t0
                progress.update(f"random: walks {rs.walks:,}  steps {rs.steps:,}  "
                                f"{rs.steps / max(rs.elapsed, 1e-9):,.0f} steps/s  {rs.elapsed:.1f}s")
                if rs.found is not None:
                    break
                if budget is not None and time.perf_counter() - t0 >= budget:
                    break
                if o.checkpoint and time.monotonic() - last >= o.checkpoint_every:
                    ckpt.save(o.checkpoint, "random", rs, saved_opts)
                    last = time.monotonic()
        finally:
            close = getattr(results, "close", None)
            if close:
                close()
    rs.elapsed = time.perf_counter() - t0
    if o.checkpoint:
        ckpt.save(o.checkpoint, "random", rs, saved_opts)
    summary = {"design": ctx.design_name, "model": problem.model, "mode": "random",
               "seed": o.seed, "walks": rs.walks, "walk_length": o.steps,
               "depth": len(rs.found["trace"]) if rs.found else o.steps,
               "distinct_states": None, "transitions": rs.steps,
               "seconds": round(rs.elapsed, 3),
               "states_per_second": round(rs.steps / rs.elapsed, 1) if rs.elapsed else None,
               "violation": None,
               "sometimes": sometimes_summary(ctx, rs.reached)}
    if rs.found:
        v = rs.found["violation"]
        original = ctx.steps_of(rs.found["trace"])
        progress.update(f"shrinking a {len(original)}-step counterexample (walk {rs.found['walk']})",
                        force=True)
        shrunk, tried = shrink(problem, original, v["kind"], deadline=time.monotonic() + 120)
        sv = first_violation(problem, shrunk).to_dict()
        actions = [step_action(s) for s in shrunk]
        files = write_counterexample(o.out, problem, ctx.make_design, ctx.design_name, actions, sv,
                                     f"random walk {rs.found['walk']} of seed {o.seed}, "
                                     f"shrunk from {len(original)} to {len(shrunk)} steps")
        summary["violation"] = dict(sv, property=rs.found["property"],
                                    trace=[action_text(a) for a in actions], files=files,
                                    walk=rs.found["walk"], original_length=len(original),
                                    shrink_candidates=tried)
    return summary
