"""`mteswap kernel fuzz` without QEMU: the generator (deterministic, valid, covering the shapes
the issue asks for), the restart of a guest that died, the files written for disagreements.
A real fuzz batch runs in test_kernel_run.py (marked `kernel`)."""

from __future__ import annotations

from collections import Counter

import pytest
from typer.testing import CliRunner

from mteswap.kernel import cgen, compare, fuzz
from mteswap.kernel.cli import kernel_app
from mteswap.scenario.load import load_scenario

runner = CliRunner()


def test_same_seed_and_index_give_the_same_scenario():
    assert fuzz.generate(5, 3) == fuzz.generate(5, 3)
    assert fuzz.generate(5, 3) != fuzz.generate(5, 4)
    assert fuzz.generate(5, 3) != fuzz.generate(6, 3)


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fuzz")
    return [load_scenario(str(fuzz.write_scenario(fuzz.generate(11, i), folder))) for i in range(120)]


def test_generated_scenarios_are_valid_for_the_model_and_the_guest(generated):
    for sc in generated:
        compare.model_run(sc)               # raises ScenarioError on an invalid step
        cgen.expand(sc)                     # raises Unsupported on what the guest cannot do
        assert 10 <= len(sc.steps) <= 40 and sc.steps[0].op == "mmap"


def test_generated_scenarios_cover_the_shapes_asked_for(generated):
    ops = Counter(st.op for sc in generated for st in sc.steps)
    for op in ("mmap", "write", "read", "stg", "mprotect", "munmap", "dontneed", "split", "pageout",
               "reclaim", "fork", "exit", "swapoff"):
        assert ops[op] > 0, op
    assert any(len(sc.config.folio_pages) >= 3 for sc in generated)       # several mTHP sizes at once
    assert all(2 not in sc.config.folio_pages for sc in generated)        # no order-1 anon mTHP
    assert max(st.args["pages"] for sc in generated for st in sc.steps if st.op == "mmap") == 64
    assert max(len({st.args.get("proc") for st in sc.steps} - {None}) for sc in generated) == 3
    kept = [st for sc in generated for st in sc.steps if st.args.get("keep_cached")]
    assert kept and all(sc.config.swap_device != "zram" for sc in generated
                        for st in sc.steps if st.args.get("keep_cached"))
    assert {sc.config.swap_device for sc in generated} == {"zram", "ssd", "rotational"}


def test_device_choice_restricts_the_swap_device():
    assert {fuzz.generate(1, i, "zram")["config"]["swap_device"] for i in range(20)} == {"zram"}
    assert {fuzz.generate(1, i, "virtio-blk")["config"]["swap_device"] for i in range(20)} <= {"ssd", "rotational"}


def _row(name, verdict="pass", started=True, states_agree=True):
    r = compare.Row(name, "", "6.12", "zram", kernel_verdict=verdict, started=started)
    r.agree = None if verdict == "error" else True
    r.states_agree = states_agree
    return r


def test_a_dead_guest_loses_only_the_scenario_in_flight(monkeypatch, generated):
    calls = []

    def fake(pending, env, kernels, device, log):
        calls.append([sc.name for sc in pending])
        if len(calls) == 1:     # died while running the second: the third never began
            return [_row(pending[0].name), _row(pending[1].name, "error"),
                    _row(pending[2].name, "error", started=False)], {}
        return [_row(sc.name) for sc in pending], {}

    monkeypatch.setattr(compare, "run_batch", fake)
    scs = generated[:3]
    rows = fuzz.run_resilient(scs, None, "6.12", lambda s: None)
    assert calls == [[sc.name for sc in scs], [scs[2].name]]
    assert [r.scenario for r in rows] == [sc.name for sc in scs]
    assert rows[1].kernel_verdict == "error" and rows[1].detail.startswith("lost in flight")


def test_a_guest_that_never_starts_is_given_up_after_two_boots(monkeypatch, generated):
    calls = []

    def fake(pending, env, kernels, device, log):
        calls.append(len(pending))
        return [_row(sc.name, "error", started=False) for sc in pending], {}

    monkeypatch.setattr(compare, "run_batch", fake)
    rows = fuzz.run_resilient(generated[:2], None, "6.12", lambda s: None)
    assert calls == [2, 2] and all(r.kernel_verdict == "error" and not r.started for r in rows)


def test_disagreements_are_written_as_files_and_progress_is_reported(monkeypatch, tmp_path):
    def fake(pending, env, kernels, device, log):
        rows = [_row(sc.name) for sc in pending]
        rows[1].states_agree = False
        rows[1].first_state_diff = {"step": 3, "proc": "A", "vma": "v1", "page": 7, "field": "pages",
                                    "kernel": "S", "model": "p"}
        return rows, {}

    monkeypatch.setattr(compare, "run_batch", fake)
    logs = []
    rep = fuzz.fuzz(None, ["6.12"], "all", 4, 3, tmp_path, batch=2, log=logs.append)
    assert len(rep.rows) == 4 and len(rep.disagreements) == 2
    names = sorted(p.name for p in (tmp_path / "disagree").iterdir())
    assert names == ["fuzz-3-0001-6.12-zram.yaml", "fuzz-3-0003-6.12-zram.yaml"]
    assert load_scenario(str(tmp_path / "disagree" / names[0])).name == "fuzz-3-0001"
    assert any(line.startswith("fuzz: 2/4 scenario(s) done") for line in logs)
    assert any("DISAGREE fuzz-3-0001 [6.12 zram]: step 3 (A v1) page 7: kernel pages 'S', model 'p'" in line
               for line in logs)
    assert logs[0].startswith("fuzz: seed 3, 4 scenario(s)")


def test_fuzz_bad_device_is_exit_2():
    res = runner.invoke(kernel_app, ["fuzz", "--seed", "1", "--device", "floppy"])
    assert res.exit_code == 2 and "--device: expected one of zram, virtio-blk, all" in res.output


def test_resume_runs_only_what_is_not_finished(monkeypatch, tmp_path):
    ran = []

    def fake(pending, env, kernels, device, log):
        ran.extend(sc.name for sc in pending)
        rows = [_row(sc.name) for sc in pending]
        if "fuzz-4-0002" in [sc.name for sc in pending]:
            rows[[sc.name for sc in pending].index("fuzz-4-0002")].states_agree = False
            rows[[sc.name for sc in pending].index("fuzz-4-0002")].first_state_diff = {
                "step": 1, "proc": "A", "vma": "v1", "page": 0, "field": "pages", "kernel": "S", "model": "p"}
        return rows, {}

    monkeypatch.setattr(compare, "run_batch", fake)
    fuzz.fuzz(None, ["6.12"], "all", 4, 4, tmp_path, batch=2)
    assert len(ran) == 4
    # killed after the first batch: only its rows stay on record
    lines = (tmp_path / fuzz.ROWS_FILE).read_text().splitlines()
    (tmp_path / fuzz.ROWS_FILE).write_text("\n".join(lines[:2]) + "\n")
    ran.clear()
    logs = []
    rep = fuzz.fuzz(None, ["6.12"], "all", 4, 4, tmp_path, batch=2, log=logs.append, resume=True)
    assert ran == ["fuzz-4-0002", "fuzz-4-0003"]
    assert [r.scenario for r in rep.rows] == [f"fuzz-4-000{i}" for i in range(4)]
    assert [r.scenario for r, _ in rep.disagreements] == ["fuzz-4-0002"]
    assert "resuming after 2 finished row(s)" in logs[0]
    assert len((tmp_path / fuzz.ROWS_FILE).read_text().splitlines()) == 4
    # a fresh run (no --resume) starts the record again
    ran.clear()
    fuzz.fuzz(None, ["6.12"], "all", 4, 4, tmp_path, batch=2)
    assert len(ran) == 4 and len((tmp_path / fuzz.ROWS_FILE).read_text().splitlines()) == 4


def test_shrink_keeps_only_the_steps_the_disagreement_needs(monkeypatch, tmp_path):
    from mteswap.kernel import shrink

    doc = next(d for d in (fuzz.generate(9, i, "zram") for i in range(50))
               if any("reclaim" in s for s in d["steps"] if isinstance(s, dict)) and len(d["steps"]) > 15)
    boots = []

    def fake(pending, env, kernels, device, log):
        # "the kernel" disagrees whenever a reclaim step is left
        boots.append(len(pending))
        rows = []
        for sc in pending:
            bad = any(st.op == "reclaim" for st in sc.steps)
            r = _row(sc.name, states_agree=not bad)
            r.first_state_diff = {"step": 1, "proc": "A", "vma": "v1", "page": 0, "field": "pages",
                                  "kernel": "S", "model": "p"} if bad else None
            rows.append(r)
        return rows, {}

    monkeypatch.setattr(compare, "run_batch", fake)
    row = _row(doc["name"], states_agree=False)
    row.first_state_diff = {"step": 1, "proc": "A", "vma": "v1", "page": 0, "field": "pages",
                            "kernel": "S", "model": "p"}
    small = shrink.shrink(doc, row, None, tmp_path)
    ops = [next(iter(s)) if isinstance(s, dict) else s for s in small["steps"]]
    assert ops.count("reclaim") == 1 and len(ops) < len(doc["steps"])
    # minimal: without any one of its steps it is invalid or no longer has a reclaim
    for i in range(len(ops)):
        rest = small["steps"][:i] + small["steps"][i + 1:]
        sc = shrink._candidate(small, rest, f"check-{i}", tmp_path)
        assert sc is None or not any(st.op == "reclaim" for st in sc.steps)
    assert len(boots) < len(doc["steps"])          # deletions taken together, not one per boot
    with pytest.raises(ValueError):
        shrink.shrink(doc, _row(doc["name"]), None, tmp_path)
