"""The documents stand alone and say true things: they name only scenarios that exist (and so
run in test_bundled_scenarios), link only files and sections that exist, and refer to nothing
outside the repository (no `../shared`, no path of a developer's machine)."""

import re
import sys
from pathlib import Path

import pytest

from mteswap.bundled import bundled_files

ROOT = Path(__file__).parent.parent


def test_every_scenario_named_in_the_discussion_is_bundled():
    text = (ROOT / "docs" / "discussion.md").read_text()
    bundled = {p.stem for p in bundled_files()}
    named = set(re.findall(r"`((?:s\d|slot|tag|round|fork|swap|small)[a-z0-9-]*)`", text))
    kinds = {"tag-check-fault", "tag-storage-leak", "tag-storage-use-after-free"}
    named = {n for n in named if "-" in n} - kinds
    assert named, "the discussion names scenarios"
    assert named <= bundled, named - bundled
    # The matrix in the document lists every bundled scenario.
    assert all(f"| {name} |" in text for name in bundled)


def test_the_figure_table_of_costs_md_is_what_mteswap_cost_gives():
    """docs/costs.md §1: every cell of the 64 KiB refault table, recomputed."""
    from mteswap.cost.run import run_design
    from mteswap.cost.workloads import build
    text = (ROOT / "docs" / "costs.md").read_text()
    section = text[text.index("## 1. "):text.index("### The figure at 1 GiB")]
    lines = [ln for ln in section.splitlines() if ln.startswith("| ")]
    designs = [c.strip() for c in lines[1].strip("|").split("|")[1:]]
    rows = {}
    for ln in lines[2:]:
        cells = [c.strip().strip("*") for c in ln.strip("|").split("|")]
        rows[cells[0].strip("*")] = cells[1:]
    checked = 0
    for col, design in enumerate(designs):
        mwf = col >= len(designs) // 2
        r = run_design(build("refault", pages=16, map_whole_folio=mwf).scenario(), design)
        for name, cells in rows.items():
            want = cells[col]
            got = (f"{r.estimate_ns['total'] / 1e6:.3f}" if name == "estimated ms"
                   else str(r.violations) if name == "violations" else str(r.counters[name]))
            assert got == want, (design, mwf, name, got, want)
            checked += 1
    assert checked >= 80


# ------------------------------------------------------------------ the documents stand alone

# What a reference outside the repository looks like: the sibling folder the contract used to
# live in, or an absolute path on a machine (at the start of a line, after a space, a backtick
# or a parenthesis, so that URLs like https://host/tmp/... are not caught).
OUTSIDE = re.compile(r"\.\./shared|(^|[ `(])/(tmp|work|farm|home|root)/")
LINK = re.compile(r"\]\(([^)\s]+)\)")          # a markdown link's target: [text](target)
MD_NAME = re.compile(r"\b[A-Za-z0-9_-]+\.md\b")   # a document named in prose or a docstring


def documents() -> list[Path]:
    """README.md, every markdown file under docs/ and tests/README.md."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md")), ROOT / "tests" / "README.md"]


def sources() -> list[Path]:
    """Files whose docstrings, comments or help texts cite documents."""
    found = [p for d in ("src", "tests", "benchmarks") for p in sorted((ROOT / d).rglob("*"))
             if p.suffix in (".py", ".yaml") and "__pycache__" not in p.parts
             and p.name != "test_docs.py"]           # this file's examples name made-up files
    return found + documents()


def outside_references(path: Path) -> list[str]:
    return [f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
            for n, line in enumerate(path.read_text().splitlines(), start=1) if OUTSIDE.search(line)]


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to '-'."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)   # a '#' in code is no heading
    return {slug(m.group(1)) for m in re.finditer(r"^#+ (.+)$", text, flags=re.M)}


def broken_links(path: Path) -> list[str]:
    """Every relative link of a document whose file, or section, does not exist."""
    bad = []
    for target in LINK.findall(path.read_text()):
        if re.match(r"[a-z]+:", target):          # http:, https:, mailto:
            continue
        name, _, anchor = target.partition("#")
        dest = (path.parent / name).resolve() if name else path
        if not dest.exists() or ROOT.resolve() not in (dest, *dest.parents):
            bad.append(f"{path.relative_to(ROOT)}: {target} (no such file in the repository)")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            bad.append(f"{path.relative_to(ROOT)}: {target} (no such section)")
    return bad


def test_the_documents_refer_to_nothing_outside_the_repository():
    found = [ref for path in documents() for ref in outside_references(path)]
    assert not found, "\n".join(found)


def test_every_link_of_the_documents_points_at_a_file_and_section_that_exist():
    found = [bad for path in documents() for bad in broken_links(path)]
    assert not found, "\n".join(found)


def test_every_document_the_code_and_docs_name_is_in_the_repository():
    """`docs/scenario-format.md`, `kernel-semantics.md §5`, ...: a name cited anywhere is a file
    in docs/, at the top of the repository or in tests/."""
    here = {p.name for p in (ROOT / "docs").glob("*.md")} | {"README.md"}
    missing = [f"{path.relative_to(ROOT)}: {name}" for path in sources()
               for name in set(MD_NAME.findall(path.read_text())) if name not in here]
    assert not missing, "\n".join(sorted(missing))


def test_docs_paths_named_in_the_code_exist():
    """A path `docs/...` in a docstring or help text names a file that exists."""
    named = {(path, m) for path in sources()
             for m in re.findall(r"\bdocs/[A-Za-z0-9_./-]*[A-Za-z0-9_]", path.read_text())}
    missing = sorted(f"{path.relative_to(ROOT)}: {m}" for path, m in named if not (ROOT / m).exists())
    assert named and not missing, "\n".join(missing)


@pytest.mark.parametrize("line, outside", [
    ("see ../shared/docs/scenario-format.md", True),
    ("figures as in `/work/shared/docs/kernel-semantics.md`", True),
    ("$ cat /tmp/bad/typo.py", True),
    ("/home/me/notes", True),
    ("(/root/x)", True),
    ("https://lore.kernel.org/tmp/x and docs/scenario-format.md", False),
    ("--write-trace s1g.trace", False),
])
def test_the_outside_reference_pattern(line, outside):
    """The checks above can fail: each kind of outside reference is caught, a URL is not."""
    assert bool(OUTSIDE.search(line)) is outside


def test_a_broken_link_and_a_missing_section_are_reported(tmp_path, monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    doc = tmp_path / "docs" / "a.md"
    doc.parent.mkdir()
    (tmp_path / "docs" / "b.md").write_text("# B title\n\n## Some `code` section\n")
    doc.write_text("[ok](b.md#some-code-section) [ok](b.md) [x](c.md) [y](b.md#nope) "
                   "[web](https://example.org/c.md) [up](../../outside.md)\n")
    assert broken_links(doc) == ["docs/a.md: c.md (no such file in the repository)",
                                 "docs/a.md: b.md#nope (no such section)",
                                 "docs/a.md: ../../outside.md (no such file in the repository)"]
