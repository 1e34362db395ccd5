"""Loading designs by spec (src/mteswap/designs/loader.py, docs/designs.md): a built-in name,
`path/to/file.py:ClassName`, or an entry point in the `mteswap.designs` group; every failure
is a one-line UnknownDesign, and exit status 2 without a traceback on the command line."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from scenario_strategies import to_yaml, valid_scenarios
from typer.testing import CliRunner

from mteswap.bundled import BUNDLED_DIR
from mteswap.cli import app, run_files
from mteswap.designs import BUILTIN, DEFAULT, UnknownDesign
from mteswap.designs.loader import HOOKS, available_designs, design_factory, load_design
from mteswap.designs.merged import Merged
from mteswap.scenario.load import ScenarioError, parse_scenario
from mteswap.scenario.runner import run_scenario

from helpers import WIDE, invoke

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "docs" / "examples" / "restore_faulting_page.py"
EXAMPLE_SPEC = f"{EXAMPLE}:RestoreFaultingPage"
PASSING = BUNDLED_DIR / "s1-shared-partial-dontneed.yaml"

GOOD_DESIGN = '''
from mteswap.designs.merged import Merged


class NoSplitFix(Merged):
    name = "tmp-design"
    summary = "merged, from a file"
'''


def assert_bad_input(result, *needles: str) -> None:
    """Exit 2, nothing on stdout, one line on stderr holding every needle, no traceback."""
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.endswith("\n"), repr(result.stderr)
    for needle in needles:
        assert needle in result.stderr, (needle, result.stderr)


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


# --------------------------------------------------------------------------- built-in names


def test_hooks_are_the_protocols_methods():
    assert set(HOOKS) >= {"arch_thp_swp_supported", "arch_prepare_to_swap", "arch_swap_restore",
                          "arch_swap_invalidate_page", "arch_swap_invalidate_range",
                          "arch_swap_invalidate_area", "split_page_mte_flags", "mte_flag_page",
                          "sync_tags"}


@pytest.mark.parametrize("name", list(BUILTIN))
def test_builtin_name_gives_a_fresh_instance(name):
    a, b = load_design(name), load_design(name)
    assert type(a) is BUILTIN[name] and type(b) is BUILTIN[name]
    assert a is not b
    assert a.name == name


def test_factory_gives_fresh_instances():
    make = design_factory(DEFAULT)
    assert make() is not make()


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(UnknownDesign) as info:
        load_design("nosuch")
    message = str(info.value)
    assert "nosuch" in message and "merged" in message and "file.py:ClassName" in message
    assert "\n" not in message
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("spec", ["", "   "])
def test_empty_spec(spec):
    with pytest.raises(UnknownDesign):
        load_design(spec)


# --------------------------------------------------------------------------- file:Class


def test_file_class_loads_and_runs(tmp_path):
    f = write(tmp_path / "mydesign.py", GOOD_DESIGN)
    design = load_design(f"{f}:NoSplitFix")
    assert isinstance(design, Merged)
    assert design.name == "tmp-design"
    result = invoke("run", "--json", "--design", f"{f}:NoSplitFix", PASSING)
    assert result.exit_code == 0, result.stderr
    obj = json.loads(result.stdout)
    assert obj["design"] == "tmp-design" and obj["verdict"] == "pass"


def test_two_files_with_the_same_stem_do_not_clash(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    fa = write(tmp_path / "a" / "design.py", GOOD_DESIGN)
    fb = write(tmp_path / "b" / "design.py", GOOD_DESIGN.replace("tmp-design", "other-design"))
    assert load_design(f"{fa}:NoSplitFix").name == "tmp-design"
    assert load_design(f"{fb}:NoSplitFix").name == "other-design"


def test_file_that_is_edited_is_imported_again(tmp_path):
    f = write(tmp_path / "d.py", GOOD_DESIGN)
    assert load_design(f"{f}:NoSplitFix").summary == "merged, from a file"
    write(f, GOOD_DESIGN.replace("merged, from a file", "edited, and longer than before"))
    assert load_design(f"{f}:NoSplitFix").summary == "edited, and longer than before"


def test_file_module_may_use_dataclasses(tmp_path):
    # dataclasses look the defining module up in sys.modules while the file is executed.
    f = write(tmp_path / "dc.py", GOOD_DESIGN + textwrap.dedent('''
        from dataclasses import dataclass

        @dataclass
        class Dc(Merged):
            name: str = "dc-design"
            summary: str = "a dataclass"
        '''))
    assert load_design(f"{f}:Dc").name == "dc-design"


def test_file_design_in_compare_and_demo(tmp_path):
    f = write(tmp_path / "mydesign.py", GOOD_DESIGN)
    result = invoke("compare", "--json", "--designs", f"merged,{f}:NoSplitFix", PASSING)
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["designs"] == ["merged", "tmp-design"]
    result = invoke("demo", "--design", f"{f}:NoSplitFix")
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "tmp-design" in result.stdout


BAD_FILES = {
    # id: (file text or None for "no file", class, substrings of the message)
    "missing-file": (None, "X", ["nosuch.py", "No such file"]),
    "bad-class-name": (GOOD_DESIGN, "Nope", ["no class 'Nope'", "NoSplitFix"]),
    "syntax-error": ("class X(:\n    pass\n", "X", ["SyntaxError", "line 1"]),
    "import-error": ("import mteswap_no_such_module\n", "X", ["ModuleNotFoundError", "mteswap_no_such_module"]),
    "module-raises": ("raise RuntimeError('bad module\\nsecond line')\n", "X", ["RuntimeError: bad module"]),
    "module-exits": ("import sys\nsys.exit(3)\n", "X", ["SystemExit"]),
    "missing-hooks": ('class X:\n    name = "x"\n    summary = "s"\n    def swap_restore(self, m, e, f, p): pass\n',
                      "X", ["missing", "prepare_to_swap", "sync_tags", "subclass mteswap.designs.merged.Merged"]),
    "constructor-raises": (GOOD_DESIGN + "\n\nclass X(NoSplitFix):\n    def __init__(self):\n        raise ValueError('no way')\n",
                           "X", ["constructor", "ValueError: no way"]),
    "constructor-needs-args": (GOOD_DESIGN + "\n\nclass X(NoSplitFix):\n    def __init__(self, level):\n        pass\n",
                               "X", ["constructor", "TypeError"]),
    "not-a-class": ("def X():\n    pass\n", "X", ["is a function"]),
    "name-not-str": (GOOD_DESIGN + "\n\nclass X(NoSplitFix):\n    name = 3\n", "X", ["`name`"]),
    "name-of-builtin": (GOOD_DESIGN + "\n\nclass X(Merged):\n    summary = 'forgot the name'\n", "X", ["'merged'", "built-in"]),
    "not-a-class-name": (GOOD_DESIGN, "1x", ["not a class name"]),
}


def _bad_spec(tmp_path: Path, case: str) -> tuple[str, list[str]]:
    text, cls, needles = BAD_FILES[case]
    f = tmp_path / ("nosuch.py" if text is None else f"bad_{case.replace('-', '_')}.py")
    if text is not None:
        f.write_text(text)
    return f"{f}:{cls}", needles


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_design_file_is_unknown_design(tmp_path, case):
    spec, needles = _bad_spec(tmp_path, case)
    with pytest.raises(UnknownDesign) as info:
        load_design(spec)
    message = str(info.value)
    assert "\n" not in message and "Traceback" not in message
    assert spec.rpartition(":")[0] in message          # names the file
    for needle in needles:
        assert needle in message, (needle, message)


@pytest.mark.parametrize("case", list(BAD_FILES))
@pytest.mark.parametrize("command", ["run", "compare", "demo"])
def test_bad_design_file_exits_2_on_the_command_line(tmp_path, case, command):
    spec, needles = _bad_spec(tmp_path, case)
    args = {"run": ["run", "--design", spec, PASSING],
            "compare": ["compare", "--designs", f"merged,{spec}", PASSING],
            "demo": ["demo", "--design", spec]}[command]
    assert_bad_input(invoke(*args), spec.rpartition(":")[0], *needles)


def test_failed_import_leaves_no_module_behind(tmp_path):
    before = set(sys.modules)
    spec, _ = _bad_spec(tmp_path, "module-raises")
    with pytest.raises(UnknownDesign):
        load_design(spec)
    assert not [m for m in set(sys.modules) - before if m.startswith("mteswap_user_design_")]


@pytest.mark.parametrize("spec", ["mydesign.py", "dir/mydesign", "mydesign.py:"])
def test_file_without_class_says_how_to_name_one(spec):
    with pytest.raises(UnknownDesign) as info:
        load_design(spec)
    assert "ClassName" in str(info.value)


def test_scenario_file_may_not_name_a_design_file(tmp_path):
    design = write(tmp_path / "mydesign.py", GOOD_DESIGN)
    sc = tmp_path / "sc.yaml"
    sc.write_text(PASSING.read_text().replace("\nsteps:", f"\ndesign: {design}:NoSplitFix\nsteps:", 1))
    assert_bad_input(invoke("run", sc), str(sc), "field 'design'", "--design")
    # The command line may: --design overrides the file's.
    result = invoke("run", "--json", "--design", f"{design}:NoSplitFix", sc)
    assert result.exit_code == 0, result.stderr


def test_run_files_takes_a_spec_too():
    (res,) = run_files([str(PASSING)], EXAMPLE_SPEC, keep_trace=False)
    assert res.design == "restore-faulting-page" and res.verdict == "pass"
    with pytest.raises(ScenarioError) as info:
        run_files([str(PASSING)], "nosuch", keep_trace=False)
    assert "nosuch" in str(info.value)


# --------------------------------------------------------------------------- entry points


DIST = "mypkg_designs-0.1.dist-info"
MODULE = '''
from mteswap.designs.merged import Merged


class MyDesign(Merged):
    name = "my-design"
    summary = "a design from an installed package"


class Renamed(Merged):
    name = "internal-name"
    summary = "registered under another name"


INSTANCE = MyDesign()


def not_a_design():
    pass
'''


@pytest.fixture
def installed(tmp_path, monkeypatch):
    """A fake installed distribution `mypkg-designs` in tmp_path, on sys.path."""

    def install(entry_points: str, module: str = MODULE):
        dist = tmp_path / DIST
        dist.mkdir(exist_ok=True)
        (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: mypkg-designs\nVersion: 0.1\n")
        (dist / "entry_points.txt").write_text("[mteswap.designs]\n" + textwrap.dedent(entry_points))
        (tmp_path / "mypkg_designs.py").write_text(module)
        monkeypatch.syspath_prepend(str(tmp_path))
        monkeypatch.delitem(sys.modules, "mypkg_designs", raising=False)
        return tmp_path

    yield install
    sys.modules.pop("mypkg_designs", None)


def test_entry_point_design_loads_and_is_listed(installed):
    installed("my-design = mypkg_designs:MyDesign\n")
    design = load_design("my-design")
    assert type(design).__name__ == "MyDesign" and design.name == "my-design"
    assert load_design("my-design") is not design
    assert list(available_designs()) == list(BUILTIN) + ["my-design"]

    result = invoke("designs")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    blank = lines.index("")
    assert lines[:blank] == list(BUILTIN) + ["my-design"]
    assert lines[-1].startswith("my-design ") and lines[-1].endswith("a design from an installed package")
    assert len(lines[blank + 1:]) == len(BUILTIN) + 1


def test_entry_point_design_on_the_command_line_and_in_a_file(installed, tmp_path):
    installed("my-design = mypkg_designs:MyDesign\n")
    result = invoke("run", "--json", "--design", "my-design", PASSING)
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["design"] == "my-design"
    sc = tmp_path / "sc.yaml"
    sc.write_text(PASSING.read_text().replace("\nsteps:", "\ndesign: my-design\nsteps:", 1))
    result = invoke("run", "--json", sc)
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["design"] == "my-design"
    result = invoke("compare", "--json", "--designs", "merged,my-design", PASSING)
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["designs"] == ["merged", "my-design"]


def test_entry_point_may_give_an_instance(installed):
    installed("my-instance = mypkg_designs:INSTANCE\n")
    design = load_design("my-instance")
    assert type(design).__name__ == "MyDesign"
    assert design.name == "my-instance"     # the entry-point name is the design's name


def test_entry_point_name_is_the_designs_name(installed):
    installed("renamed = mypkg_designs:Renamed\n")
    assert load_design("renamed").name == "renamed"
    result = invoke("run", "--json", "--design", "renamed", PASSING)
    assert json.loads(result.stdout)["design"] == "renamed"


def test_builtin_name_wins_over_an_entry_point(installed):
    installed("merged = mypkg_designs:MyDesign\n")
    assert type(load_design("merged")) is BUILTIN["merged"]
    assert list(available_designs()) == list(BUILTIN)


@pytest.mark.parametrize("target, needle", [
    ("mypkg_designs:Missing", "AttributeError"),
    ("mypkg_no_such_module:X", "ModuleNotFoundError"),
    ("mypkg_designs:not_a_design", "is a function"),
])
def test_broken_entry_point(installed, target, needle):
    installed(f"broken = {target}\n")
    with pytest.raises(UnknownDesign) as info:
        load_design("broken")
    assert "broken" in str(info.value) and needle in str(info.value)
    assert_bad_input(invoke("run", "--design", "broken", PASSING), "broken", needle)
    # `designs` still works and says why the design cannot be used.
    result = invoke("designs")
    assert result.exit_code == 0
    assert "broken" in result.stdout.splitlines()
    assert "cannot be loaded" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


def test_entry_point_module_raising_on_import(installed):
    installed("my-design = mypkg_designs:MyDesign\n", module="raise ImportError('needs torch')\n")
    with pytest.raises(UnknownDesign) as info:
        load_design("my-design")
    assert "ImportError: needs torch" in str(info.value)


def test_unknown_name_lists_entry_points_too(installed):
    installed("my-design = mypkg_designs:MyDesign\n")
    with pytest.raises(UnknownDesign) as info:
        load_design("nosuch")
    assert "my-design" in str(info.value)


# --------------------------------------------------------------------------- the docs example


def test_docs_example_passes_wherever_merged_passes():
    result = invoke("compare", "--json", "--designs", f"merged,{EXAMPLE_SPEC}")
    assert result.exit_code == 0, result.stdout + result.stderr
    doc = json.loads(result.stdout)
    assert doc["designs"] == ["merged", "restore-faulting-page"]
    cells = {(c["scenario"], c["design"]): c for c in doc["cells"]}
    for scenario in doc["scenarios"]:
        merged, example = cells[scenario, "merged"], cells[scenario, "restore-faulting-page"]
        if merged["verdict"] == "pass":
            assert example["verdict"] == "pass", scenario
        # It is a pure optimisation: never more restore iterations than merged.
        assert (example["counters"]["restore_page_iterations"]
                <= merged["counters"]["restore_page_iterations"]), scenario
    # ... and it does save work on a refault of a large swap-cache folio.
    s1p = "s1p-shared-partial-dontneed-swapcache"
    assert (cells[s1p, "restore-faulting-page"]["counters"]["restore_page_iterations"]
            < cells[s1p, "merged"]["counters"]["restore_page_iterations"])


def test_docs_example_is_what_the_doc_shows():
    doc = (REPO / "docs" / "designs.md").read_text()
    assert "docs/examples/restore_faulting_page.py:RestoreFaultingPage" in doc
    assert EXAMPLE.read_text().strip() in doc   # the doc shows the complete file


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_scenarios())
def test_docs_example_finds_what_merged_finds_on_random_scenarios(doc):
    try:
        sc = parse_scenario(to_yaml(doc), file="random.yaml")
        merged = run_scenario(sc, load_design("merged"))
        example = run_scenario(sc, load_design(EXAMPLE_SPEC))
    except ScenarioError:
        return
    key = lambda res: [(v.kind, v.step, v.page) for v in res.violations]  # noqa: E731
    assert key(example) == key(merged)


# --------------------------------------------------------------------------- overrides are called

BROKEN_RESTORES = '''
from mteswap.designs.merged import Merged


class BrokenRestore(Merged):
    """merged, whose arch_swap_restore counts the call and restores nothing."""
    name = "broken-restore"
    summary = "restores no tags"

    def arch_swap_restore(self, m, entry, folio, page=None, k=1):
        m.count("restore_calls", k)


class OldBrokenRestore(Merged):
    """The same written against the old interface: arch_swap_restore(m, first_entry, folio)."""
    name = "old-broken-restore"
    summary = "restores no tags (old signature)"

    def arch_swap_restore(self, m, first_entry, folio):
        m.count("restore_calls")
'''


@pytest.mark.parametrize("cls", ["BrokenRestore", "OldBrokenRestore"])
def test_a_broken_merged_subclass_fails_under_run_and_under_cost(tmp_path, cls):
    """An override is always called: under `run` (traced, small) and under `cost` (no trace,
    no origins, batches of faults at scale) the broken restore loses the tags."""
    import json
    path = tmp_path / "broken.py"
    path.write_text(BROKEN_RESTORES)
    spec = f"{path}:{cls}"
    scenario = tmp_path / "s.yaml"
    scenario.write_text("version: 1\nname: s\nconfig: {folio_pages: [1, 4]}\nsteps:\n"
                        "  - mmap: {proc: A, vma: v, pages: 8, mte: true}\n"
                        "  - write: {proc: A, vma: v, pages: all, tag: distinct}\n"
                        "  - reclaim: {proc: A, vma: v, pages: all}\n"
                        "  - read: {proc: A, vma: v, pages: all}\n")
    run = invoke("run", scenario, "--design", spec, "--json")
    assert run.exit_code == 1, run.stdout
    first = json.loads(run.stdout)["violations"][0]
    assert (first["kind"], first["step"], first["page"]) == ("tag-check-fault", 4, 0)
    for device in ("ssd", "zram"):
        cost = invoke("cost", "--workload", "sequential", "--pages", "256", "--swap-device",
                      device, "--designs", f"merged,{spec}", "--json", "--no-progress")
        assert cost.exit_code == 0, cost.stderr
        merged, broken = json.loads(cost.stdout)["results"]
        assert merged["violations"] == 0
        assert broken["violations"] > 0 and broken["first_violation"].startswith("tag-check-fault")
