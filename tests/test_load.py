"""Tests for the scenario loader (src/mteswap/scenario/load.py)."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mteswap
from mteswap.scenario import (
    ALL,
    OPS,
    VIOLATION_KINDS,
    Config,
    Expected,
    Scenario,
    ScenarioError,
    Step,
    load_scenario,
    parse_scenario,
)
from mteswap.scenario.load import with_kernel
from scenario_strategies import mutated_scenario_texts, to_yaml, valid_scenarios

# The example of docs/scenario-format.md ("Shape"), verbatim.
CONTRACT_EXAMPLE = """\
version: 1                         # required, must be 1
name: shared-partial-dontneed      # required: lowercase letters, digits and '-'
description: |                     # optional, free text
  Process A forks B; both drop pages 0-3 of a swapped-out 64 KiB folio ...
design: merged                     # optional; `--design` on the command line overrides it
config:                            # optional; every key optional, defaults shown
  folio_pages: [1, 16]             # anon folio sizes (in 4 KiB pages) the allocator may use
  swap_device: ssd                 # ssd | zram | rotational
  swap_slots: 1024                 # slots on the one swap device (clusters of 512, as in Linux)
  frames: 256                      # physical 4 KiB frames in the machine
  map_whole_folio: true            # fault on a large swap-cache folio maps all its swap PTEs (v6.11+)
  large_swapin: true               # zram only: a swap-in may allocate a large folio (v6.12+)
expect:                            # optional: the verdict each design should give
  merged: pass                     #   pass, fail, or the kind of the first violation
  rfc-v1: tag-check-fault
steps:                             # required, at least one; each step is a one-key mapping
  - mmap:    {proc: A, vma: buf, pages: 16, mte: true}
  - write:   {proc: A, vma: buf, pages: 0-15, tag: distinct}
  - fork:    {proc: A, child: B}
  - reclaim: {proc: A, vma: buf, pages: 0-15}
  - dontneed: {proc: A, vma: buf, pages: 0-3}
  - read:    {proc: A, vma: buf, pages: 8}
"""

BUNDLED = sorted((Path(mteswap.__file__).parent / "scenarios").glob("*.yaml"))


def doc(steps: str = "  - evict\n", extra: str = "", head: str = "version: 1\nname: t\n") -> str:
    """A scenario text: `head`, then `extra` top-level lines, then the steps block."""
    return f"{head}{extra}steps:\n{steps}"


def one_step(step: str) -> str:
    return doc(f"  - {step}\n")


def parse_error(text: str | bytes, file: str = "bad.yaml") -> ScenarioError:
    with pytest.raises(ScenarioError) as info:
        parse_scenario(text, file)
    return info.value


# ---------------------------------------------------------------- valid input


def test_expect_full_form():
    """`expect` per design: the plain verdict, or the first violation's kind, step and page
    (page absent or null: a violation that names no page)."""
    text = doc("  - evict\n  - evict\n", extra="expect:\n  merged: pass\n"
               "  rfc-v1: {kind: tag-check-fault, step: 2, page: 4}\n"
               "  rfc-v2: {kind: invariant, step: 1}\n  rfc-v3: {kind: invariant, step: 1, page: null}\n")
    e = parse_scenario(text).expect
    assert e == {"merged": Expected("pass"), "rfc-v1": Expected("tag-check-fault", 2, 4),
                 "rfc-v2": Expected("invariant", 1, None), "rfc-v3": Expected("invariant", 1, None)}
    assert str(e["rfc-v1"]) == "tag-check-fault@2 page 4" and str(e["rfc-v2"]) == "invariant@1"
    assert e["rfc-v1"].written() == {"kind": "tag-check-fault", "step": 2, "page": 4}
    assert e["merged"].written() == "pass"


def test_expect_per_kernel():
    """A design's verdict as a mapping of kernel versions: the one of the scenario's kernel,
    and `--kernel` (with_kernel) switches to the other's; a kernel left out expects nothing."""
    text = doc("  - evict\n", extra="expect:\n  merged: pass\n"
               "  rfc-v2: {'6.12': pass, 7.2: {kind: invariant, step: 1}}\n"
               "  rfc-v3: {'7.2': fail}\n")
    sc = parse_scenario(text)
    assert sc.expect == {"merged": Expected("pass"), "rfc-v2": Expected("pass")}
    assert with_kernel(sc, "7.2").expect == {"merged": Expected("pass"),
                                             "rfc-v2": Expected("invariant", 1, None),
                                             "rfc-v3": Expected("fail")}
    assert with_kernel(with_kernel(sc, "7.2"), "6.12").expect == sc.expect
    on_72 = parse_scenario(text.replace("steps:", "config: {kernel: '7.2'}\nsteps:"))
    assert on_72.expect == with_kernel(sc, "7.2").expect


def test_bad_expect_exits_2_with_one_line(tmp_path):
    from helpers import invoke
    f = tmp_path / "bad.yaml"
    f.write_text(doc(extra="expect: {merged: {kind: invariant, step: 9}}\n"))
    for command in (["run"], ["compare", "--designs", "merged"]):
        result = invoke(*command, f)
        assert result.exit_code == 2 and result.stdout == ""
        assert result.stderr == (f"mteswap: error: {f}: field 'expect.merged.step': expected a step "
                                 "number of this scenario, 1-1, got 9\n"), result.stderr


def test_contract_example():
    scenario = parse_scenario(CONTRACT_EXAMPLE, "example.yaml")
    assert scenario.file == "example.yaml"
    assert scenario.name == "shared-partial-dontneed"
    assert scenario.description.startswith("Process A forks B;")
    assert scenario.design == "merged"
    assert scenario.config == Config()  # the example spells out the defaults
    assert scenario.expect == {"merged": Expected("pass"), "rfc-v1": Expected("tag-check-fault")}
    every_page = range(16)                # an 'a-b' range stays a range
    assert scenario.steps == (
        Step(1, "mmap", {"proc": "A", "vma": "buf", "pages": 16, "mte": True}),
        Step(2, "write", {"proc": "A", "vma": "buf", "pages": every_page, "tag": "distinct"}),
        Step(3, "fork", {"proc": "A", "child": "B"}),
        Step(4, "reclaim", {"proc": "A", "vma": "buf", "pages": every_page, "keep_cached": False}),
        Step(5, "dontneed", {"proc": "A", "vma": "buf", "pages": range(4)}),
        Step(6, "read", {"proc": "A", "vma": "buf", "pages": (8,)}),
    )


@pytest.mark.parametrize("path", BUNDLED, ids=[path.name for path in BUNDLED])
def test_bundled_scenarios_load(path: Path):
    scenario = load_scenario(path)
    assert scenario.steps and scenario.file == str(path)


def test_defaults_of_a_minimal_scenario():
    scenario = parse_scenario(doc())
    assert scenario.file == "<string>"
    assert (scenario.description, scenario.design, scenario.expect) == ("", None, {})
    assert scenario.config == Config(
        folio_pages=(1, 16), swap_device="ssd", swap_slots=1024, frames=256,
        map_whole_folio=True, large_swapin=True, tag_alloc_fail_after=None,
    )


def test_config_values_are_normalised():
    config = parse_scenario(doc(extra=(
        "config:\n  folio_pages: [16, 1, 4]\n  swap_device: zram\n  swap_slots: 64\n"
        "  frames: 16\n  map_whole_folio: false\n  large_swapin: false\n"
        "  tag_alloc_fail_after: 0\n"
    ))).config
    assert config == Config((1, 4, 16), "zram", 64, 16, False, False, 0)


@pytest.mark.parametrize(("text", "kernel"), [
    ("", "6.12"), ("config: {kernel: '7.2'}\n", "7.2"), ("config: {kernel: 7.2}\n", "7.2"),
    ("config: {kernel: 6.12}\n", "6.12"), ("config: {kernel: \"6.12\"}\n", "6.12"),
])
def test_config_kernel_defaults_to_6_12_and_reads_a_bare_yaml_number(text, kernel):
    assert parse_scenario(doc(extra=text)).config.kernel == kernel


def test_with_kernel_overrides_the_files_kernel_and_rejects_unknown_ones():
    sc = parse_scenario(doc(extra="config: {kernel: '7.2', frames: 16}\n"))
    assert with_kernel(sc, None) is sc
    over = with_kernel(sc, "6.12")
    assert (over.config.kernel, over.config.frames) == ("6.12", 16)
    with pytest.raises(ScenarioError) as err:
        with_kernel(sc, "7.0")
    assert str(err.value) == "--kernel: expected one of 6.12, 7.2, got '7.0'"


def test_null_optional_sections_mean_absent():
    scenario = parse_scenario(doc(extra="description:\ndesign:\nconfig:\nexpect:\n"))
    assert (scenario.description, scenario.design, scenario.config, scenario.expect) == (
        "", None, Config(), {},
    )


@pytest.mark.parametrize(
    ("spec", "pages"),
    [
        ("5", (5,)),
        ("0", (0,)),
        ("0-3", range(0, 4)),
        ("'2 - 4'", range(2, 5)),
        ("7-7", range(7, 8)),
        ("[0, 2, 5]", (0, 2, 5)),
        ("[3, 1, 3, 1]", (3, 1)),  # order kept, repeats dropped
        ("all", ALL),
        ("65535", (65535,)),
    ],
)
def test_page_spec_forms(spec: str, pages):
    step = parse_scenario(one_step(f"read: {{proc: A, vma: buf, pages: {spec}}}")).steps[0]
    assert step.args["pages"] == pages and type(step.args["pages"]) is type(pages)


@pytest.mark.parametrize(
    ("step", "args"),
    [
        ("mmap: {proc: A, vma: b, pages: 4}", {"proc": "A", "vma": "b", "pages": 4, "mte": False}),
        ("munmap: {proc: A, vma: b}", {"proc": "A", "vma": "b", "pages": ALL}),
        ("mprotect: {proc: A, vma: b, pages: 1, mte: true}",
         {"proc": "A", "vma": "b", "pages": (1,), "mte": True}),
        ("write: {proc: A, vma: b, pages: 1}",
         {"proc": "A", "vma": "b", "pages": (1,), "tag": None}),
        ("write: {proc: A, vma: b, pages: 1, tag: 0}",
         {"proc": "A", "vma": "b", "pages": (1,), "tag": 0}),
        ("write: {proc: A, vma: b, pages: 1, tag: 15}",
         {"proc": "A", "vma": "b", "pages": (1,), "tag": 15}),
        ("fork: {proc: A, child: B.2}", {"proc": "A", "child": "B.2"}),
        ("exit: {proc: A}", {"proc": "A"}),
        ("pageout: {proc: A, vma: b, pages: all}",
         {"proc": "A", "vma": "b", "pages": ALL, "keep_cached": False}),
        ("reclaim: {proc: A, vma: b, pages: 0, keep_cached: true}",
         {"proc": "A", "vma": "b", "pages": (0,), "keep_cached": True}),
        ("dontneed: {proc: A, vma: b, pages: 0}", {"proc": "A", "vma": "b", "pages": (0,)}),
        ("split: {proc: A, vma: b, pages: 0}", {"proc": "A", "vma": "b", "pages": (0,)}),
        ("evict", {}),
        ("evict:", {}),
        ("evict: null", {}),
        ("evict: {}", {}),
        ("swapoff", {}),
        ("swapoff: {}", {}),
        ("drop_caches", {}),
        ("drop_caches: {}", {}),
    ],
)
def test_step_args_are_normalised(step: str, args: dict):
    (parsed,) = parse_scenario(one_step(step)).steps
    assert (parsed.index, parsed.op, parsed.args) == (1, step.split(":")[0], args)


def test_ops_table_and_kinds():
    assert set(OPS) == {
        "mmap", "munmap", "mprotect", "write", "read", "fork", "exit",
        "pageout", "reclaim", "evict", "dontneed", "split", "swapoff",
        "stg", "drop_caches",   # additions to format 1
    }
    assert VIOLATION_KINDS == (
        "tag-check-fault", "data-corruption", "tag-storage-leak",
        "tag-storage-use-after-free", "invariant",
        "deadlock", "use-after-free",   # additions (issue 14): parallel blocks
        "stale-tags",                   # addition (issue 14): the write-generation ghost
    )


def test_bytes_with_bom_and_anchors_are_fine():
    text = "\ufeff" + doc(
        "  - mmap: &m {proc: A, vma: b, pages: 2}\n  - write: {<<: *m, pages: 0-1, tag: 3}\n"
    )
    steps = parse_scenario(text.encode()).steps
    assert steps[1].args == {"proc": "A", "vma": "b", "pages": range(2), "tag": 3}


def test_load_scenario_reads_a_file(tmp_path: Path):
    path = tmp_path / "example.yaml"
    path.write_text(CONTRACT_EXAMPLE, encoding="utf-8")
    assert load_scenario(path) == parse_scenario(CONTRACT_EXAMPLE, str(path))


# ------------------------------------------------------------------ bad input

STEP_PAGES = "expected an index, a range 'a-b', a list of indices or 'all'"

# (id, text, step, field, fragment of the message)
BAD_INPUTS = [
    ("unknown-top-key", doc(extra="colour: red\n"), None, "colour", "unknown key, expected one of"),
    ("version-2", doc(head="version: 2\nname: t\n"), None, "version", "expected 1, got 2"),
    ("version-string", doc(head="version: '1'\nname: t\n"), None, "version", "got '1'"),
    ("version-missing", doc(head="name: t\n"), None, "version", "missing, expected 1"),
    ("name-upper", doc(head="version: 1\nname: Bad-Name\n"), None, "name", "got 'Bad-Name'"),
    ("name-space", doc(head="version: 1\nname: a b\n"), None, "name", "lowercase letters"),
    ("name-missing", doc(head="version: 1\n"), None, "name", "missing"),
    ("description-int", doc(extra="description: 5\n"), None, "description", "expected text"),
    ("design-list", doc(extra="design: [merged]\n"), None, "design", "got a list"),
    ("unknown-config-key", doc(extra="config: {colour: red}\n"), None, "config.colour",
     "unknown key, expected one of folio_pages"),
    ("config-list", doc(extra="config: [1]\n"), None, "config", "expected a mapping"),
    ("folio-not-power-of-two", doc(extra="config: {folio_pages: [1, 3]}\n"), None,
     "config.folio_pages", "expected powers of two from 1 to 512, got 3"),
    ("folio-missing-1", doc(extra="config: {folio_pages: [2, 4]}\n"), None,
     "config.folio_pages", "include 1"),
    ("folio-too-big", doc(extra="config: {folio_pages: [1, 1024]}\n"), None,
     "config.folio_pages", "got 1024"),
    ("folio-repeated", doc(extra="config: {folio_pages: [1, 1]}\n"), None,
     "config.folio_pages", "distinct"),
    ("folio-empty", doc(extra="config: {folio_pages: []}\n"), None,
     "config.folio_pages", "got an empty list"),
    ("swap-device", doc(extra="config: {swap_device: hdd}\n"), None, "config.swap_device",
     "expected one of ssd, zram, rotational, got 'hdd'"),
    ("bool-as-int", doc(extra="config: {swap_slots: true}\n"), None, "config.swap_slots",
     "got true"),
    ("float-as-int", doc(extra="config: {frames: 2.5}\n"), None, "config.frames", "got 2.5"),
    ("frames-zero", doc(extra="config: {frames: 0}\n"), None, "config.frames",
     "from 1 to 1048576"),
    ("string-as-bool", doc(extra="config: {large_swapin: 'yes'}\n"), None,
     "config.large_swapin", "expected true or false"),
    ("fail-after-negative", doc(extra="config: {tag_alloc_fail_after: -1}\n"), None,
     "config.tag_alloc_fail_after", "got -1"),
    ("kernel-unknown", doc(extra="config: {kernel: '6.6'}\n"), None, "config.kernel",
     "expected one of '6.12', '7.2', got '6.6'"),
    ("kernel-int", doc(extra="config: {kernel: 7}\n"), None, "config.kernel",
     "expected one of '6.12', '7.2', got 7"),
    ("expect-verdict", doc(extra="expect: {merged: boom}\n"), None, "expect.merged",
     "expected pass, fail or one of tag-check-fault"),
    ("expect-list", doc(extra="expect: [merged]\n"), None, "expect", "expected a mapping"),
    ("expect-full-no-step", doc(extra="expect: {merged: {kind: invariant}}\n"), None,
     "expect.merged.step", "missing, expected a step number of this scenario, 1-1"),
    ("expect-kernel-unknown", doc(extra="expect: {merged: {'8.1': pass}}\n"), None,
     "expect.merged", "expected a kernel version ('6.12', '7.2') or the keys kind, step, page, got '8.1'"),
    ("expect-kernel-verdict", doc(extra="expect: {merged: {7.2: boom}}\n"), None,
     "expect.merged.7.2", "expected pass, fail or one of tag-check-fault"),
    ("expect-kernel-step", doc(extra="expect: {merged: {'6.12': {kind: invariant, step: 3}}}\n"),
     None, "expect.merged.6.12.step", "expected a step number of this scenario, 1-1, got 3"),
    ("expect-full-no-kind", doc(extra="expect: {merged: {step: 1}}\n"), None,
     "expect.merged.kind", "missing, expected one of tag-check-fault"),
    ("expect-full-pass", doc(extra="expect: {merged: {kind: pass, step: 1}}\n"), None,
     "expect.merged.kind", "expected one of tag-check-fault, data-corruption"),
    ("expect-full-step-past-end", doc(extra="expect: {merged: {kind: invariant, step: 2}}\n"), None,
     "expect.merged.step", "expected a step number of this scenario, 1-1, got 2"),
    ("expect-full-step-zero", doc(extra="expect: {merged: {kind: invariant, step: 0}}\n"), None,
     "expect.merged.step", "got 0"),
    ("expect-full-page", doc(extra="expect: {merged: {kind: invariant, step: 1, page: -1}}\n"),
     None, "expect.merged.page", "expected a page index 0-262143 or null, got -1"),
    ("expect-full-page-bool", doc(extra="expect: {merged: {kind: invariant, step: 1, page: true}}\n"),
     None, "expect.merged.page", "got true"),
    ("expect-full-unknown-key", doc(extra="expect: {merged: {kind: invariant, step: 1, pid: 1}}\n"),
     None, "expect.merged.pid", "unknown key, expected one of kind, step, page"),
    ("unknown-op", doc("  - evict\n  - frob: {proc: A}\n"), 2, None,
     "unknown op 'frob', expected one of mmap, munmap"),
    ("unknown-field", one_step("write: {proc: A, vma: b, page: 1}"), 1, "page",
     "unknown field, expected one of proc, vma, pages, tag"),
    ("missing-field", one_step("write: {proc: A, vma: b}"), 1, "pages",
     f"missing, {STEP_PAGES}"),
    ("missing-body", one_step("read:"), 1, "proc", "missing"),
    ("mprotect-mte-false", one_step("mprotect: {proc: A, vma: b, pages: 0, mte: false}"), 1,
     "mte", "VM_MTE is sticky, PROT_MTE cannot be removed"),
    ("mprotect-mte-missing", one_step("mprotect: {proc: A, vma: b, pages: 0}"), 1, "mte",
     "missing, expected true"),
    ("tag-16", one_step("write: {proc: A, vma: b, pages: 0, tag: 16}"), 1, "tag",
     "expected a tag 0-15 or 'distinct', got 16"),
    ("tag-bool", one_step("write: {proc: A, vma: b, pages: 0, tag: true}"), 1, "tag", "got true"),
    ("pages-word", one_step("write: {proc: A, vma: b, pages: x}"), 1, "pages",
     f"{STEP_PAGES}, got 'x'"),
    ("pages-reversed", one_step("read: {proc: A, vma: b, pages: 5-3}"), 1, "pages", "a <= b"),
    ("pages-too-big", one_step("read: {proc: A, vma: b, pages: 262144}"), 1, "pages",
     "page index 0-262143"),
    ("pages-range-too-big", one_step("read: {proc: A, vma: b, pages: 0-262144}"), 1, "pages",
     "0-262143"),
    ("pages-negative", one_step("read: {proc: A, vma: b, pages: -1}"), 1, "pages", "got -1"),
    ("pages-empty-list", one_step("read: {proc: A, vma: b, pages: []}"), 1, "pages",
     "got an empty list"),
    ("pages-list-item", one_step("read: {proc: A, vma: b, pages: [1, '2']}"), 1, "pages",
     "got '2'"),
    ("pages-all-caps", one_step("read: {proc: A, vma: b, pages: ALL}"), 1, "pages", "got 'ALL'"),
    ("mmap-zero-pages", one_step("mmap: {proc: A, vma: b, pages: 0}"), 1, "pages",
     "page count from 1 to 262144"),
    ("mmap-mte-string", one_step("mmap: {proc: A, vma: b, pages: 1, mte: 'true'}"), 1, "mte",
     "expected true or false"),
    ("proc-int", one_step("exit: {proc: 7}"), 1, "proc", "got 7"),
    ("vma-slash", one_step("read: {proc: A, vma: a/b, pages: 0}"), 1, "vma", "got 'a/b'"),
    ("fork-self", one_step("fork: {proc: A, child: A}"), 1, "child", "other than proc"),
    ("keep-cached-int", one_step("pageout: {proc: A, vma: b, pages: 0, keep_cached: 1}"), 1,
     "keep_cached", "expected true or false, got 1"),
    ("evict-value", one_step("evict: 3"), 1, None, "expected no fields"),
    ("evict-field", one_step("evict: {all: true}"), 1, "all", "takes no fields"),
    ("drop-caches-field", one_step("drop_caches: {proc: A}"), 1, "proc", "takes no fields"),
    ("bare-op-with-fields", one_step("mmap"), 1, None, "got the bare op name"),
    ("two-key-step", doc("  - mmap:\n    proc: A\n"), 1, None, "indented under 'mmap'"),
    ("step-int", one_step("5"), 1, None, "expected a one-key mapping"),
    ("step-body-list", one_step("read: [A, b, 0]"), 1, None, "expected a mapping of fields"),
    ("empty-steps", doc(steps="  []\n"), None, "steps", "expected a non-empty list of steps"),
    ("steps-missing", "version: 1\nname: t\n", None, "steps", "missing"),
    ("date-as-text", doc(extra="description: 2024-01-05\n"), None, "description",
     "got a date (2024-01-05)"),
]


@pytest.mark.parametrize(
    ("text", "step", "field", "fragment"),
    [case[1:] for case in BAD_INPUTS],
    ids=[case[0] for case in BAD_INPUTS],
)
def test_bad_input_is_reported_with_its_place(text, step, field, fragment):
    err = parse_error(text)
    message = str(err)
    assert message.startswith("bad.yaml: ")
    assert (err.file, err.step, err.field) == ("bad.yaml", step, field)
    if step is not None:
        assert f"step {step}" in message
    if field is not None:
        assert f"field '{field}'" in message
    assert fragment in message
    assert "\n" not in message


def test_message_formats_of_the_brief():
    err = parse_error(doc("  - evict\n  - evict\n  - write: {proc: A, vma: b, pages: x}\n"))
    assert str(err) == (
        "bad.yaml: step 3 (write): field 'pages': expected an index, a range 'a-b', "
        "a list of indices or 'all', got 'x'"
    )
    assert (err.op, err.message) == ("write", f"{STEP_PAGES}, got 'x'")
    err = parse_error(doc(extra="config:\n  swap_device: hdd\n"))
    assert str(err) == (
        "bad.yaml: field 'config.swap_device': expected one of ssd, zram, rotational, got 'hdd'"
    )


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        pytest.param("version: 1\nname: [t\n", "YAML error at line", id="yaml-syntax"),
        pytest.param("version: 1\n  name: t\n", "YAML error at line 2, column 7", id="bad-indent"),
        pytest.param(doc() + "---\n" + doc(), "one YAML document", id="multiple-documents"),
        pytest.param(doc(extra="name: u\n"), "duplicate key 'name'", id="duplicate-key"),
        pytest.param("", "empty scenario", id="empty-file"),
        pytest.param("# nothing\n", "empty scenario", id="comment-only"),
        pytest.param("~\n", "empty scenario", id="null-document"),
        pytest.param("- evict\n", "expected a mapping with version", id="top-level-list"),
        pytest.param(b"version: 1\nname: \xff\n", "not valid UTF-8: byte 0xff at offset 17",
                     id="non-utf8"),
        pytest.param("version: 1\x00\n", "unacceptable character", id="nul-char"),
        pytest.param("[" * 1000, "nesting too deep", id="deep-nesting"),
        pytest.param(doc(extra="description: 2024-13-45\n"), "bad value", id="impossible-date"),
        pytest.param("version: 0x" + "f" * 5000 + "\n", "a very large integer", id="huge-hex-int"),
        pytest.param("steps: &s [*s]\nversion: 1\nname: t\n", "step 1:", id="recursive-alias"),
        pytest.param("version: !!python/object:os.system x\n", "YAML error", id="python-tag"),
    ],
)
def test_bad_documents(text, fragment):
    message = str(parse_error(text))
    assert message.startswith("bad.yaml: ")
    assert fragment in message
    assert "\n" not in message


def test_page_indices_have_a_total_budget():
    # One alias repeated: a small file that would expand to ~4 GiB of page tuples.
    steps = "  - &r {read: {proc: A, vma: b, pages: 0-65535}}\n" + "  - *r\n" * 8000
    err = parse_error(doc(steps))
    assert (err.step, err.op, err.field) == (65, "read", "pages")
    assert "scenario too large" in str(err)


def test_missing_file(tmp_path: Path):
    path = tmp_path / "nope.yaml"
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    assert str(info.value) == f"{path}: cannot read file: No such file or directory"


def test_directory_is_unreadable(tmp_path: Path):
    with pytest.raises(ScenarioError, match="cannot read file"):
        load_scenario(tmp_path)


def test_non_utf8_file(tmp_path: Path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes(doc(extra="description: caf\xe9\n").encode("latin-1"))
    with pytest.raises(ScenarioError, match=r"latin1\.yaml: not valid UTF-8"):
        load_scenario(str(path))


def test_error_survives_pickling():
    err = ScenarioError("f.yaml", "expected 1, got 2", step=3, field="x", op="write")
    copy = pickle.loads(pickle.dumps(err))
    assert str(copy) == str(err) == "f.yaml: step 3 (write): field 'x': expected 1, got 2"
    assert (copy.step, copy.field, copy.op) == (3, "x", "write")


# ------------------------------------------------------------------ properties


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_scenarios())
def test_generated_valid_scenarios_parse(data: dict):
    scenario = parse_scenario(to_yaml(data))
    assert isinstance(scenario, Scenario)
    assert [step.index for step in scenario.steps] == list(range(1, len(data["steps"]) + 1))


def _parses_or_reports(text: str | bytes) -> None:
    try:
        result = parse_scenario(text, "fuzz.yaml")
    except ScenarioError as err:
        message = str(err)
        assert message.startswith("fuzz.yaml: ") and "\n" not in message
    else:
        assert isinstance(result, Scenario)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_scenario_texts())
def test_mutated_texts_never_crash_the_loader(text: str | bytes):
    _parses_or_reports(text)


@settings(max_examples=1500, deadline=None)
@given(st.binary(max_size=512) | st.text(max_size=256))
def test_arbitrary_input_never_crashes_the_loader(data: bytes | str):
    _parses_or_reports(data)
