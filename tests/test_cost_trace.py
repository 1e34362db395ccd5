"""Operation trace files for `mteswap cost` (docs/trace-format.md)."""

from __future__ import annotations

import pickle
import re
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scenario_strategies import valid_scenarios

from mteswap.cost.run import run_design
from mteswap.cost.trace import (
    CONFIG_KINDS,
    FIELD_KINDS,
    TraceError,
    TraceWorkload,
    load_trace,
    parse_trace,
    write_trace,
)
from mteswap.cost.workloads import WORKLOADS, Workload, build
from mteswap.scenario.load import OPS, Config, ScenarioError, _scenario

DOC = Path(__file__).parent.parent / "docs" / "trace-format.md"

HAND = """\
# a hand-written trace
config swap_device=zram folio_pages=1,16
config frames=200 swap_slots=2048 map_whole_folio=0

mmap proc=A vma=heap pages=32 mte=1
write proc=A vma=heap pages=0-31 tag=distinct   # fill
fork proc=A child=B
write proc=B vma=heap pages=3 tag=5
reclaim proc=A vma=heap pages=0-31 keep_cached=1
read proc=B vma=heap pages=1,3,5-7
stg proc=A vma=heap pages=8, tag=0
dontneed proc=A vma=heap pages=16-31
\tpageout\tproc=A vma=heap pages=all keep_cached=false
split proc=A vma=heap pages=0-15
evict
mprotect proc=A vma=heap pages=0 mte=true
munmap proc=B vma=heap
exit proc=B
swapoff
"""

HAND_STEPS = [
    {"mmap": {"proc": "A", "vma": "heap", "pages": 32, "mte": True}},
    {"write": {"proc": "A", "vma": "heap", "pages": "0-31", "tag": "distinct"}},
    {"fork": {"proc": "A", "child": "B"}},
    {"write": {"proc": "B", "vma": "heap", "pages": 3, "tag": 5}},
    {"reclaim": {"proc": "A", "vma": "heap", "pages": "0-31", "keep_cached": True}},
    {"read": {"proc": "B", "vma": "heap", "pages": [1, 3, 5, 6, 7]}},
    {"stg": {"proc": "A", "vma": "heap", "pages": [8], "tag": 0}},
    {"dontneed": {"proc": "A", "vma": "heap", "pages": "16-31"}},
    {"pageout": {"proc": "A", "vma": "heap", "pages": "all", "keep_cached": False}},
    {"split": {"proc": "A", "vma": "heap", "pages": "0-15"}},
    {"evict": {}},
    {"mprotect": {"proc": "A", "vma": "heap", "pages": 0, "mte": True}},
    {"munmap": {"proc": "B", "vma": "heap"}},
    {"exit": {"proc": "B"}},
    {"swapoff": {}},
]


def workload_of(doc: dict) -> Workload:
    return Workload("gen", 0, {}, _scenario(doc, "gen").config, doc["steps"])


# -- parsing -----------------------------------------------------------------------------------


def test_hand_written_trace_gives_the_expected_steps():
    w = parse_trace(HAND, "hand.trace")
    assert isinstance(w, TraceWorkload) and isinstance(w, Workload)
    assert (w.name, w.seed, w.params) == ("trace", 0, {"file": "hand.trace"})
    assert w.steps == HAND_STEPS
    assert w.config == Config(folio_pages=(1, 16), swap_device="zram", swap_slots=2048,
                              frames=200, map_whole_folio=False)
    assert w.lines == (5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19)
    assert w.config_lines == {"swap_device": 2, "folio_pages": 2, "frames": 3, "swap_slots": 3,
                              "map_whole_folio": 3}
    s = w.scenario()
    assert s.file == "hand.trace" and s.name == "cost-trace"
    assert s == _scenario(w.doc(), "hand.trace")      # the cached scenario is the loader's
    assert s.steps[5].args["pages"] == (1, 3, 5, 6, 7)
    assert run_design(s, "merged", check_state=True).violations == 0


def test_bytes_bom_crlf_and_comments():
    text = "\ufeff# c\r\nmmap proc=A vma=v pages=4 # trailing\r\n\r\n  read proc=A vma=v pages=0-3\r\n"
    w = parse_trace(text.encode(), "b.trace")
    assert w.steps == [{"mmap": {"proc": "A", "vma": "v", "pages": 4}},
                       {"read": {"proc": "A", "vma": "v", "pages": "0-3"}}]
    assert w.lines == (2, 4)


def test_page_list_forms():
    def pages(spec):
        return parse_trace(f"read proc=A vma=v pages={spec}").steps[0]["read"]["pages"]

    assert pages("5") == 5
    assert pages("0-15") == "0-15"
    assert pages("all") == "all"
    assert pages("5,") == [5]
    assert pages("3,1,1,7-9,2") == [3, 1, 1, 7, 8, 9, 2]
    assert pages("0-65535,") == list(range(65536))


def test_config_sized_from_the_trace_when_absent():
    for name in ("sequential", "zygote", "allocator-churn"):
        w = build(name, pages=64)
        body = [line for line in write_trace(w).splitlines() if not line.startswith("config")]
        assert parse_trace("\n".join(body)).config == w.config, name
    w = parse_trace("config frames=999\nmmap proc=A vma=v pages=1000\nfork proc=A child=B")
    assert (w.config.frames, w.config.swap_slots) == (999, 2048 + 1024)
    assert parse_trace("evict").config == Config(frames=64, swap_slots=1024)


def test_config_none_and_folio_sizes():
    w = parse_trace("config tag_alloc_fail_after=3 folio_pages=1,4,512 large_swapin=false\nevict")
    assert (w.config.tag_alloc_fail_after, w.config.folio_pages) == (3, (1, 4, 512))
    assert w.config.large_swapin is False
    assert parse_trace("config tag_alloc_fail_after=none\nevict").config.tag_alloc_fail_after \
        is None


def test_every_field_and_config_key_has_a_kind():
    # A new op field or config key must get a converter here, not silently stay text.
    assert {spec.name for specs in OPS.values() for spec in specs} == set(FIELD_KINDS)
    assert list(CONFIG_KINDS) == ["folio_pages", "swap_device", "swap_slots", "frames",
                                  "map_whole_folio", "large_swapin", "tag_alloc_fail_after",
                                  "tag_storage", "kernel"]


def test_large_trace_parses_fast():
    n = 100_000
    text = "mmap proc=A vma=heap pages=65536 mte=1\n" + "".join(
        f"read proc=A vma=heap pages={i * 7 % 65536}\n" for i in range(n))
    start = time.perf_counter()
    w = parse_trace(text, "big.trace")
    assert len(w.steps) == n + 1 and w.lines[-1] == n + 1
    assert time.perf_counter() - start < 20     # ~2 s here; guards against per-line YAML


# -- round trip --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(WORKLOADS))
def test_round_trip_of_every_builtin_workload(name):
    w = build(name, pages=64)
    text = write_trace(w)
    back = parse_trace(text, f"{name}.trace")
    assert back.steps == w.steps
    assert back.config == w.config
    assert back.scenario().steps == w.scenario().steps
    assert write_trace(back).splitlines()[1:] == text.splitlines()[1:]


@pytest.mark.parametrize("name", ["sequential", "allocator-churn"])
def test_replayed_trace_costs_the_same_as_the_generator(name):
    w = build(name, pages=64)
    trace = parse_trace(write_trace(w), f"{name}.trace")
    want = run_design(w.scenario(), "merged")
    got = run_design(trace.scenario(), "merged")
    assert got.counters == want.counters
    assert got.raw == want.raw
    assert (got.violations, got.page_ops, got.steps) == (want.violations, want.page_ops,
                                                         want.steps)


def test_written_lists_keep_their_form():
    steps = [{"read": {"proc": "A", "vma": "v", "pages": p}}
             for p in ([4], [0, 1, 2, 3], [1, 2], [9, 3, 4, 5, 5, 1], 7, "2-3", "all")]
    steps.append("evict")
    steps.append({"write": {"proc": "A", "vma": "v", "pages": 1, "tag": None}})
    w = Workload("x", 0, {}, Config(tag_alloc_fail_after=0), steps)
    text = write_trace(w)
    assert "pages=4," in text and "pages=0-3," in text and "pages=9,3-5,5,1" in text
    back = parse_trace(text)
    assert back.steps[:7] == steps[:7]
    assert back.steps[7:] == [{"evict": {}}, {"write": {"proc": "A", "vma": "v", "pages": 1}}]
    assert back.config == w.config


@pytest.mark.parametrize("step", [
    {"read": {"proc": "A B", "vma": "v", "pages": 1}},
    {"read": {"proc": "A#", "vma": "v", "pages": 1}},
    {"read": {"proc": "A", "vma": "v", "pages": []}},
    {"read": {"proc": "A", "vma": "v", "pages": 1.5}},
    {"read": "body"},
    {"bad op": {}},
    {"read": {}, "write": {}},
])
def test_write_trace_rejects_what_the_format_cannot_hold(step):
    with pytest.raises(ValueError):
        write_trace(Workload("x", 0, {}, Config(), [step]))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_scenarios())
def test_round_trip_of_generated_scenarios(doc):
    original = workload_of(doc)
    back = parse_trace(write_trace(original), "gen.trace")
    assert back.config == original.config
    assert back.scenario().steps == original.scenario("gen.trace").steps


# -- errors ------------------------------------------------------------------------------------

BASE = "mmap proc=A vma=heap pages=64 mte=1\n\n"    # the bad line is line 3

ERRORS = [
    # (line 3, field, fragment of the message)
    ("frob proc=A", None, "unknown op 'frob'"),
    ("proc=A vma=heap", None, "unknown op 'proc=A'"),
    ("write proc=A vma=heap pages=0-15 colour=red", "colour", "unknown field"),
    ("evict proc=A", "proc", "unknown field"),
    ("write proc=A vma=heap pages", "pages", "missing '=VALUE'"),
    ("write proc=A vma=heap 0-15", None, "expected KEY=VALUE, got '0-15'"),
    ("write proc=A vma=heap =3 pages=1", None, "expected KEY=VALUE, got '=3'"),
    ("write proc=A vma=heap pages=1 pages=2", "pages", "given twice"),
    ("write proc=A vma=heap", "pages", "missing"),
    ("mmap proc=B vma=x pages=16 mte=yes", "mte", "expected 1, 0, true or false, got 'yes'"),
    ("reclaim proc=A vma=heap pages=1 keep_cached=", "keep_cached", "expected 1, 0, true"),
    ("mmap proc=A vma=x pages=0", "pages", "expected a page count"),
    ("mmap proc=A vma=x pages=ten", "pages", "got 'ten'"),
    ("mmap proc=A vma=x pages=99999999999999999999999", "pages", "expected a page count"),
    ("read proc=A vma=heap pages=zz", "pages", "got 'zz'"),
    ("read proc=A vma=heap pages=", "pages", "got ''"),
    ("read proc=A vma=heap pages=-1", "pages", "got '-1'"),
    ("read proc=A vma=heap pages=1,,3", "pages", "empty item"),
    ("read proc=A vma=heap pages=1,x", "pages", "got 'x'"),
    ("read proc=A vma=heap pages=1,2-", "pages", "got item '2-'"),
    ("read proc=A vma=heap pages=1,300000", "pages", "0-262143"),
    ("read proc=A vma=heap pages=1,0-99999999999", "pages", "0-262143"),
    ("read proc=A vma=heap pages=9-3,", "pages", "a <= b"),
    ("read proc=A vma=heap pages=1,٣", "pages", "0-262143"),
    ("read proc=A vma=heap pages=5-300000", "pages", "0-262143"),
    ("write proc=A vma=heap pages=1 tag=16", "tag", "expected a tag 0-15"),
    ("stg proc=A vma=heap pages=1", "tag", "missing"),
    ("mprotect proc=A vma=heap pages=1 mte=0", "mte", "sticky"),
    ("fork proc=A child=A", "child", "other than proc"),
    ("fork proc=A child=a/b", "child", "expected a process name"),
    ("read proc=A vma=heap pages=1\x01", "pages", "expected"),
    ("config frames=10", None, "config lines must come before the first operation"),
]


@pytest.mark.parametrize("line, field, fragment", ERRORS)
def test_bad_line_names_line_field_and_expectation(line, field, fragment):
    with pytest.raises(ScenarioError) as info:
        parse_trace(BASE + line + "\nevict\n", "bad.trace")
    err = info.value
    message = str(err)
    assert isinstance(err, TraceError) and err.line == 3
    assert message.startswith("bad.trace: line 3"), message
    if field is not None:
        assert err.field == field and f"field '{field}'" in message, message
    assert fragment in message, message
    assert "\n" not in message


CONFIG_ERRORS = [
    ("config frames=10\nconfig frames=12", 2, "config.frames", "already set on line 1"),
    ("config foo=1", 1, "config.foo", "unknown key"),
    ("config\n", 1, None, "expected KEY=VALUE settings after 'config'"),
    ("# x\nconfig frames=0", 2, "config.frames", "expected an integer from 1"),
    ("config frames=many", 1, "config.frames", "got 'many'"),
    ("config folio_pages=1,3", 1, "config.folio_pages", "powers of two"),
    ("config folio_pages=16", 1, "config.folio_pages", "include 1"),
    ("config folio_pages=1,x", 1, "config.folio_pages", "got '1,x'"),
    ("config swap_device=nvme", 1, "config.swap_device", "one of"),
    ("config map_whole_folio=2", 1, "config.map_whole_folio", "expected 1, 0, true or false"),
    ("config tag_alloc_fail_after=-1", 1, "config.tag_alloc_fail_after", "count"),
    ("config frames", 1, "config.frames", "missing '=VALUE'"),
    ("config frames=1 frames=2", 1, "config.frames", "given twice on this line"),
]


@pytest.mark.parametrize("text, line, field, fragment", CONFIG_ERRORS)
def test_bad_config_names_line_and_key(text, line, field, fragment):
    with pytest.raises(TraceError) as info:
        parse_trace(text + "\nevict\n", "c.trace")
    message = str(info.value)
    assert message.startswith(f"c.trace: line {line} (config)"), message
    if field is not None:
        assert f"field '{field}'" in message, message
    assert fragment in message, message


@pytest.mark.parametrize("data, fragment, line", [
    (b"", "no operations", None),
    (b"# only a comment\n\n", "no operations", None),
    (b"config frames=10\n", "no operations", None),
    (b"evict\n\xff\xfe\n", "not valid UTF-8 (byte 0xff)", 2),
    (b"evict\nevict\nev\x00ict\n", "binary data (a NUL byte)", 3),
    (bytes(range(256)), "binary data", 1),
])
def test_bad_file_content(data, fragment, line):
    with pytest.raises(TraceError) as info:
        parse_trace(data, "f.trace")
    assert info.value.line == line
    assert fragment in str(info.value)
    assert str(info.value).startswith("f.trace: " + (f"line {line}: " if line else ""))


def test_too_many_page_indices_in_lists():
    text = "mmap proc=A vma=v pages=65536\n" + "read proc=A vma=v pages=0-65535,\n" * 70
    with pytest.raises(TraceError, match=r"line 66 \(read\): field 'pages': trace too large"):
        parse_trace(text)
    ranges = "mmap proc=A vma=v pages=65536\n" + "read proc=A vma=v pages=0-65535\n" * 70
    with pytest.raises(TraceError, match=r"line 66 \(read\): field 'pages': scenario too large"):
        parse_trace(ranges)


def test_unreadable_files(tmp_path):
    for path, fragment in [(tmp_path / "missing.trace", "No such file"),
                           (tmp_path, "cannot read file")]:
        with pytest.raises(TraceError, match=fragment) as info:
            load_trace(path)
        assert str(info.value).startswith(str(path) + ": cannot read file")
    with pytest.raises(TraceError, match="cannot read file"):
        load_trace("bad\x00name")
    good = tmp_path / "ok.trace"
    good.write_text(HAND)
    w = load_trace(good)
    assert w.steps == HAND_STEPS and w.params == {"file": str(good)}
    assert w.scenario().file == str(good)


def test_errors_while_running_name_the_line():
    w = parse_trace("config frames=16\nmmap proc=A vma=heap pages=64 mte=1\n\n"
                    "write proc=A vma=heap pages=0-63\n", "run.trace")
    with pytest.raises(ScenarioError) as info:
        run_design(w.scenario(), "merged")
    err = w.locate(info.value)
    assert isinstance(err, TraceError)
    assert str(err).startswith("run.trace: line 4 (write): field 'frames': ")
    assert w.locate(err) is err
    w = parse_trace("mmap proc=A vma=heap pages=4\n# x\nread proc=A vma=nope pages=1", "r.trace")
    with pytest.raises(ScenarioError) as info:
        run_design(w.scenario(), "merged")
    assert str(w.locate(info.value)).startswith("r.trace: line 3 (read): field 'vma': ")


def test_trace_error_pickles_and_is_a_scenario_error():
    err = TraceError("f", "bad", line=3, field="pages", op="read", step=2)
    back = pickle.loads(pickle.dumps(err))
    assert str(back) == str(err) == "f: line 3 (read): field 'pages': bad"
    assert (back.line, back.step, back.field, back.op) == (3, 2, "pages", "read")
    assert isinstance(back, ScenarioError)


# -- robustness --------------------------------------------------------------------------------

SAMPLE = write_trace(build("zygote", pages=64, children=1)) + HAND.split("\n", 3)[3]
SAMPLE_LINES = SAMPLE.splitlines()
WORDS = sorted({w for line in SAMPLE_LINES for w in re.split(r"[ =,\-]", line) if w}
               | set(OPS) | {"config", "=", ",", "-", "#", "all", "none", "distinct", "\t",
                             "\x00", "\r", "\ufeff", "٣", "é", "99999999999999999999", "65536"})


@st.composite
def mutated_traces(draw):
    lines = list(SAMPLE_LINES)
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(lines) - 1))
        kind = draw(st.integers(0, 6))
        line = lines[i]
        if kind == 0:          # replace a word
            parts = re.split(r"([ =,\-])", line)
            j = draw(st.integers(0, len(parts) - 1))
            parts[j] = draw(st.sampled_from(WORDS))
            lines[i] = "".join(parts)
        elif kind == 1:        # insert random text
            j = draw(st.integers(0, len(line)))
            lines[i] = line[:j] + draw(st.text(max_size=12)) + line[j:]
        elif kind == 2:        # delete a slice
            j = draw(st.integers(0, len(line)))
            lines[i] = line[:j] + line[j + draw(st.integers(1, 8)):]
        elif kind == 3:        # move a line
            lines.insert(draw(st.integers(0, len(lines))), lines.pop(i))
        elif kind == 4:        # a line of random words
            lines[i] = " ".join(draw(st.lists(st.sampled_from(WORDS), max_size=6)))
        elif kind == 5:        # drop a line
            del lines[i]
            if not lines:
                lines = [""]
        else:                  # a random line
            lines[i] = draw(st.text(max_size=40))
    text = "\n".join(lines)
    if draw(st.booleans()):
        return text
    data = bytearray(text.encode("utf-8", "surrogatepass"))
    for _ in range(draw(st.integers(0, 3))):
        if data:
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    return bytes(data)


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_traces())
def test_mutated_traces_raise_only_trace_errors(data):
    try:
        w = parse_trace(data, "m.trace")
    except TraceError as err:
        message = str(err)
        assert message.startswith("m.trace: ") and "\n" not in message
        return
    assert w.scenario().steps            # accepted: the loader agrees


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300) | st.text(max_size=300))
def test_random_input_raises_only_trace_errors(data):
    try:
        parse_trace(data, "r.trace")
    except TraceError as err:
        assert "\n" not in str(err)


# -- the document ------------------------------------------------------------------------------


def test_every_op_has_a_documented_example_that_parses():
    text = DOC.read_text()
    rows = re.findall(r"^\| `([a-z_]+)` \|[^|]*\| `([^`]+)` \|$", text, re.M)
    examples = {op: line for op, line in rows if line.split()[0] == op}   # not config rows
    assert set(examples) == set(OPS)
    for op, line in examples.items():
        assert parse_trace(line).steps[0].keys() == {op}
    for op in ("config", *OPS):
        assert op in text
