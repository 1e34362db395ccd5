"""Load and validate scenario files (format 1, see docs/scenario-format.md).

This module is the only code that looks at raw YAML. Everything downstream (runner,
oracle, CLI) works on the normalised `Scenario`, so every check on user input lives
here, and every failure becomes a one-line `ScenarioError` that names the file, the
step, the field, what was expected and what was found. No other exception may escape
`parse_scenario` / `load_scenario`, whatever the input bytes.
"""

from __future__ import annotations

import datetime
import itertools
import os
import re
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Mapping

import yaml

from mteswap.model.reverts import REVERTS

__all__ = [
    "ALL",
    "OPS",
    "KERNELS",
    "SWAP_DEVICES",
    "VERDICTS",
    "VIOLATION_KINDS",
    "Config",
    "Expected",
    "FieldSpec",
    "Scenario",
    "ScenarioError",
    "Step",
    "load_scenario",
    "parse_scenario",
]

FORMAT_VERSION = 1
ALL = "all"  # PageSpec sentinel: every page of the VMA still mapped in that process
VIOLATION_KINDS = (
    "tag-check-fault",
    "data-corruption",
    "tag-storage-leak",
    "tag-storage-use-after-free",
    "invariant",
    "deadlock",   # addition (issue 14): no thread of a parallel block can run
    "use-after-free",   # addition (issue 14): a thread read the swap device swapoff freed
    "stale-tags",   # addition (issue 14): the expected tags, but of another write (ghost)
)
VERDICTS = ("pass", "fail", *VIOLATION_KINDS)
SWAP_DEVICES = ("ssd", "zram", "rotational")
TAG_STORAGES = ("plain", "compressed")
# Kernel versions whose differing behaviours the model follows (docs/model.md); the first is
# the default.
KERNELS = ("6.12", "7.2")

MAX_VMA_PAGES = 1 << 18  # a VMA holds at most this many pages (1 GiB); indices stay below it
MAX_CONFIG_INT = 1 << 20
MAX_FOLIO_PAGES = 512  # PMD size in 4 KiB pages: the largest folio the model knows
MAX_TOTAL_PAGE_INDICES = 1 << 22  # all steps' expanded PageSpecs together (a work guard)

_SCENARIO_NAME = re.compile(r"[a-z0-9-]+")
_ENTITY_NAME = re.compile(r"[A-Za-z0-9_.-]+")
_RANGE = re.compile(r"([0-9]+) *- *([0-9]+)")
_MAX_SHOWN = 40  # longest quoted value in a message, so messages stay one short line


# --------------------------------------------------------------------------- errors


class ScenarioError(Exception):
    """Bad scenario input, reported as one line starting with the file name."""

    def __init__(
        self,
        file: str,
        message: str,
        step: int | None = None,
        field: str | None = None,
        op: str | None = None,
    ) -> None:
        # Pass every argument up so that pickling/copying rebuilds the same error.
        super().__init__(file, message, step, field, op)
        self.file = file
        self.message = message
        self.step = step
        self.field = field
        self.op = op

    def place(self) -> str | None:
        """Where in the file: `step N (op)`; subclasses may name something else (a line)."""
        if self.step is None:
            return None
        return f"step {self.step} ({self.op})" if self.op else f"step {self.step}"

    def __str__(self) -> str:
        parts = [self.file]
        place = self.place()
        if place is not None:
            parts.append(place)
        if self.field is not None:
            parts.append(f"field '{self.field}'")
        parts.append(self.message)
        return ": ".join(parts)


class _Invalid(Exception):
    """Raised by a field converter; the caller adds file/step/field.

    With no detail the caller reports "expected <spec.expected>, got <value>".
    """

    def __init__(self, detail: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail


@dataclass(frozen=True)
class _Where:
    """Where in the file we are, to build errors without threading three arguments."""

    file: str
    step: int | None = None
    op: str | None = None

    def error(self, message: str, field: str | None = None) -> ScenarioError:
        return ScenarioError(self.file, message, step=self.step, field=field, op=self.op)


def _clip(text: str) -> str:
    text = text.replace("\n", " ")
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 3] + "..."


def _describe(value: Any) -> str:
    """Name a loaded YAML value the way a YAML author would recognise it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        # Hex literals can yield ints too long for str() (Python's digit limit).
        return str(value) if value.bit_length() <= 64 else "a very large integer"
    if isinstance(value, str):
        return _clip(repr(value))
    if isinstance(value, float):
        return f"{value!r} (a float)"
    if isinstance(value, list):
        return "a list" if value else "an empty list"
    if isinstance(value, dict):
        return "a mapping" if value else "an empty mapping"
    if isinstance(value, datetime.datetime):
        return "a timestamp"
    if isinstance(value, datetime.date):
        return f"a date ({value.isoformat()})"
    if isinstance(value, bytes):
        return "binary data"
    if isinstance(value, (set, frozenset)):
        return "a set"
    return f"a {type(value).__name__}"


def _names(items: Any) -> str:
    return ", ".join(str(item) for item in items)


# --------------------------------------------------------------------- data model


@dataclass(frozen=True)
class Config:
    folio_pages: tuple[int, ...] = (1, 16)  # sorted ascending, unique, contains 1
    swap_device: str = "ssd"  # one of SWAP_DEVICES
    swap_slots: int = 1024
    frames: int = 256
    map_whole_folio: bool = True
    large_swapin: bool = True
    # Addition to format 1: the (N+1)-th tag-buffer allocation fails, once. None: never.
    tag_alloc_fail_after: int | None = None
    # Addition: how saved tags are stored, "plain" (mainline) or "compressed" (V7, unmerged).
    tag_storage: str = "plain"
    # Addition (issue 13): which kernel's behaviour to follow where 6.12 and 7.2 differ.
    kernel: str = KERNELS[0]
    # Addition (issue 14): fixes taken out of the model, by commit id (model/reverts.py).
    revert: tuple[str, ...] = ()


@dataclass(frozen=True)
class Step:
    index: int  # 1-based position in `steps`, as used in every message
    op: str  # a key of OPS, or PARALLEL (args {"lanes": (lane, ...)}, a lane a tuple of Steps)
    args: Mapping[str, Any]  # every field of the op, defaults filled in
    # A step in a lane of a parallel block has the block's index; what its `write` stores is
    # numbered by `value_base` instead, unique in the scenario (0: use `index`).
    value_base: int = 0


@dataclass(frozen=True)
class Expected:
    """What a scenario's `expect` says one design gives: a verdict (`pass`, `fail` or the first
    violation's kind), and in the full form `{kind, step, page}` also the first violation's
    step and page (page None: the violation names no page, e.g. an invariant)."""

    kind: str  # one of VERDICTS
    step: int | None = None  # None: the plain form, the kind alone is compared
    page: int | None = None

    def matches(self, first: Any) -> bool:
        """Does `first` (the first Violation, or None for a pass) give this outcome?"""
        if self.kind == "pass" or first is None:
            return self.kind == "pass" and first is None
        if self.kind == "fail":
            return True
        if first.kind != self.kind:
            return False
        return self.step is None or (first.step, first.page) == (self.step, self.page)

    def __str__(self) -> str:
        if self.step is None:
            return self.kind
        return f"{self.kind}@{self.step}" + ("" if self.page is None else f" page {self.page}")

    def written(self) -> str | dict:
        """As a scenario file writes it (JSON output): the plain string or the mapping."""
        if self.step is None:
            return self.kind
        return {"kind": self.kind, "step": self.step, "page": self.page}


@dataclass(frozen=True)
class Scenario:
    file: str
    name: str
    description: str
    design: str | None
    config: Config
    expect: dict[str, Expected]   # under config.kernel (what every tool compares against)
    steps: tuple[Step, ...]
    # The file's `expect` per kernel version, so that `with_kernel` (a command line's
    # --kernel) gives the expectations of that kernel: {kernel: {design: Expected}}.
    expect_by_kernel: dict = field(default_factory=dict, compare=False, repr=False)
    # Issue 14: the file's default preemption bound for its parallel blocks (`preemptions`):
    # {design name or "*": N}; a command line's --preemptions overrides it.
    preemptions: dict = field(default_factory=dict, compare=False)

    def preemption_bound(self, design: str) -> int | None:
        """The file's bound for this design (None: every interleaving)."""
        return self.preemptions.get(design, self.preemptions.get("*"))


@dataclass(frozen=True)
class FieldSpec:
    """One field of a step (or of `config`): how to check and normalise it."""

    name: str
    expected: str  # phrase completing "expected ..."
    convert: Callable[[Any], Any]  # raises _Invalid on bad input
    required: bool = True
    default: Any = None


# ------------------------------------------------------------------- converters


def _is_int(value: Any) -> bool:
    # YAML true/false load as bool, a subclass of int: never accept them as numbers.
    return isinstance(value, int) and not isinstance(value, bool)


def _int_between(low: int, high: int) -> Callable[[Any], int]:
    def convert(value: Any) -> int:
        if _is_int(value) and low <= value <= high:
            return value
        raise _Invalid()

    return convert


def _optional_count(value: Any) -> int | None:
    if value is None or (_is_int(value) and value >= 0):
        return value
    raise _Invalid()


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    raise _Invalid()


def _one_of(choices: tuple[str, ...]) -> Callable[[Any], str]:
    def convert(value: Any) -> str:
        if isinstance(value, str) and value in choices:
            return value
        raise _Invalid()

    return convert


def _kernel(value: Any) -> str:
    # YAML reads an unquoted `kernel: 7.2` as a float; its text is still a version name.
    if isinstance(value, float) and not isinstance(value, bool):
        value = repr(value)
    if isinstance(value, str) and value in KERNELS:
        return value
    raise _Invalid()


def _entity_name(value: Any) -> str:
    if isinstance(value, str) and _ENTITY_NAME.fullmatch(value):
        return value
    raise _Invalid()


def _page_spec(value: Any) -> str | tuple[int, ...] | range:
    """Normalise a PageSpec to ALL or distinct indices in the order given: a tuple, or a range
    for 'a-b'."""
    if isinstance(value, str) and value == ALL:
        return ALL
    if _is_int(value):
        if not 0 <= value < MAX_VMA_PAGES:
            raise _Invalid(f"expected a page index 0-{MAX_VMA_PAGES - 1}, got {_describe(value)}")
        return (value,)
    if isinstance(value, str):
        return _page_range(value)
    if isinstance(value, list) and value:
        indices = []
        for item in value:
            if not _is_int(item) or not 0 <= item < MAX_VMA_PAGES:
                raise _Invalid(
                    f"expected list items to be page indices 0-{MAX_VMA_PAGES - 1}, "
                    f"got {_describe(item)}"
                )
            indices.append(item)
        return tuple(dict.fromkeys(indices))  # drops repeats, keeps first occurrence
    raise _Invalid()


def _page_range(text: str) -> range:
    match = _RANGE.fullmatch(text.strip())
    if match is None:
        raise _Invalid()
    # Bound the digit strings before int(): Python limits str->int conversion length.
    first, last = match.groups()
    if len(first) > 6 or len(last) > 6:
        raise _Invalid(f"expected page indices 0-{MAX_VMA_PAGES - 1}, got {_describe(text)}")
    start, end = int(first), int(last)
    if end >= MAX_VMA_PAGES:
        raise _Invalid(f"expected page indices 0-{MAX_VMA_PAGES - 1}, got {_describe(text)}")
    if start > end:
        raise _Invalid(f"expected a range 'a-b' with a <= b, got {_describe(text)}")
    # A range, not a tuple: a 1 GiB workload names each of 262,144 pages in several steps,
    # and a tuple would hold a pointer (and an int object) per page.
    return range(start, end + 1)


def _tag(value: Any) -> int | str | None:
    if value is None or (isinstance(value, str) and value == "distinct"):
        return value
    if _is_int(value) and 0 <= value <= 15:
        return value
    raise _Invalid()


def _stg_tag(value: Any) -> int | str:
    tag = _tag(value)
    if tag is None:
        raise _Invalid()
    return tag


def _reverts(value: Any) -> tuple[str, ...]:
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise _Invalid()
    unknown = [v for v in value if v not in REVERTS]
    if unknown:
        raise _Invalid(f"expected commit ids among {_names(REVERTS)}, got {_clip(_names(unknown))}")
    return tuple(dict.fromkeys(value))


def _mte_added(value: Any) -> bool:
    if value is True:
        return True
    if value is False:
        raise _Invalid("VM_MTE is sticky, PROT_MTE cannot be removed: expected true, got false")
    raise _Invalid()


def _folio_pages(value: Any) -> tuple[int, ...]:
    if not isinstance(value, list) or not value:
        raise _Invalid()
    for size in value:
        if not _is_int(size) or not 1 <= size <= MAX_FOLIO_PAGES or size & (size - 1):
            raise _Invalid(
                f"expected powers of two from 1 to {MAX_FOLIO_PAGES}, got {_describe(size)}"
            )
    if len(set(value)) != len(value):
        raise _Invalid(f"expected distinct sizes, got {_clip(str(value))}")
    if 1 not in value:
        # Order-0 folios are the fallback whenever a large folio cannot be had.
        raise _Invalid(f"expected the sizes to include 1, got {_clip(str(value))}")
    return tuple(sorted(value))


# ----------------------------------------------------------------- field tables

_NAME_CHARS = "(letters, digits, '_', '.', '-')"
_PROC = FieldSpec("proc", f"a process name {_NAME_CHARS}", _entity_name)
_VMA = FieldSpec("vma", f"a VMA name {_NAME_CHARS}", _entity_name)
_PAGES = FieldSpec(
    "pages", "an index, a range 'a-b', a list of indices or 'all'", _page_spec
)
_KEEP_CACHED = FieldSpec("keep_cached", "true or false", _bool, required=False, default=False)

OPS: dict[str, tuple[FieldSpec, ...]] = {
    "mmap": (
        _PROC,
        _VMA,
        FieldSpec(
            "pages", f"a page count from 1 to {MAX_VMA_PAGES}", _int_between(1, MAX_VMA_PAGES)
        ),
        FieldSpec("mte", "true or false", _bool, required=False, default=False),
    ),
    "munmap": (_PROC, _VMA, replace(_PAGES, required=False, default=ALL)),
    "mprotect": (_PROC, _VMA, _PAGES, FieldSpec("mte", "true", _mte_added)),
    "write": (
        _PROC,
        _VMA,
        _PAGES,
        FieldSpec("tag", "a tag 0-15 or 'distinct'", _tag, required=False, default=None),
    ),
    "read": (_PROC, _VMA, _PAGES),
    # Addition to format 1: STG alone, no data store (tags a zero-filled page).
    "stg": (_PROC, _VMA, _PAGES, FieldSpec("tag", "a tag 0-15 or 'distinct'", _stg_tag)),
    "fork": (_PROC, FieldSpec("child", f"a process name {_NAME_CHARS}", _entity_name)),
    "exit": (_PROC,),
    "pageout": (_PROC, _VMA, _PAGES, _KEEP_CACHED),
    "reclaim": (_PROC, _VMA, _PAGES, _KEEP_CACHED),
    "evict": (),
    "dontneed": (_PROC, _VMA, _PAGES),
    "split": (_PROC, _VMA, _PAGES),
    "swapoff": (),
    # Addition (issue 13): `echo 3 > /proc/sys/vm/drop_caches`, which runs every shrinker,
    # the deferred-split one included.
    "drop_caches": (),
}

_CONFIG_INT = f"an integer from 1 to {MAX_CONFIG_INT}"

# Config keys are all optional: an absent key keeps the Config dataclass default.
_CONFIG_FIELDS = (
    FieldSpec(
        "folio_pages",
        f"a non-empty list of distinct powers of two from 1 to {MAX_FOLIO_PAGES}, including 1",
        _folio_pages,
    ),
    FieldSpec("swap_device", f"one of {_names(SWAP_DEVICES)}", _one_of(SWAP_DEVICES)),
    FieldSpec("swap_slots", _CONFIG_INT, _int_between(1, MAX_CONFIG_INT)),
    FieldSpec("frames", _CONFIG_INT, _int_between(1, MAX_CONFIG_INT)),
    FieldSpec("map_whole_folio", "true or false", _bool),
    FieldSpec("large_swapin", "true or false", _bool),
    FieldSpec("tag_alloc_fail_after", "a count >= 0 or null", _optional_count),
    FieldSpec("tag_storage", f"one of {_names(TAG_STORAGES)}", _one_of(TAG_STORAGES)),
    FieldSpec("kernel", f"one of {_names(repr(k) for k in KERNELS)}", _kernel),
    FieldSpec("revert", f"a list of commit ids among {_names(REVERTS)}", lambda v: _reverts(v)),
)

_TOP_KEYS = ("version", "name", "description", "design", "config", "expect", "preemptions",
             "steps")


# ------------------------------------------------------------------ YAML layer


class _Loader(yaml.SafeLoader):
    """yaml.SafeLoader that also rejects duplicate keys in a mapping.

    Plain safe_load silently keeps the last of two equal keys, which turns a
    copy-paste slip in a hand-written scenario into a different scenario.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._checked: set[yaml.Node] = set()

    def flatten_mapping(self, node: yaml.MappingNode) -> None:
        # Runs before merge keys ('<<') are folded in, and flattening rewrites
        # node.value, so each node is checked once, on its first visit.
        if node not in self._checked:
            self._checked.add(node)
            self._check_duplicates(node)
        super().flatten_mapping(node)

    @staticmethod
    def _check_duplicates(node: yaml.MappingNode) -> None:
        seen = set()
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag.endswith(":merge"):
                continue
            key = (key_node.tag, key_node.value)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {_clip(repr(key_node.value))}", key_node.start_mark
                )
            seen.add(key)


def _decode(data: bytes, file: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ScenarioError(
            file, f"not valid UTF-8: byte 0x{data[err.start]:02x} at offset {err.start}"
        ) from None


def _load_document(text: str, file: str) -> Any:
    """Return the single YAML document in `text` (None if there is none)."""
    try:
        # Two documents are enough to know there are too many.
        documents = list(itertools.islice(yaml.load_all(text, Loader=_Loader), 2))
    except yaml.MarkedYAMLError as err:
        raise _yaml_error(file, err) from None
    except yaml.reader.ReaderError as err:
        line, column = _line_column(text, err.position)
        reason = str(err).splitlines()[0]
        raise ScenarioError(file, f"YAML error at line {line}, column {column}: {reason}") from None
    except yaml.YAMLError as err:
        raise ScenarioError(file, f"YAML error: {_clip(str(err))}") from None
    except RecursionError:
        raise ScenarioError(file, "YAML error: nesting too deep") from None
    except Exception as err:  # noqa: BLE001
        # PyYAML's constructors raise bare ValueError/OverflowError for scalars
        # that match a YAML type but not Python's (2024-13-45, huge ints...).
        raise ScenarioError(file, f"YAML error: bad value: {_clip(str(err))}") from None
    if len(documents) > 1:
        raise ScenarioError(file, "expected one YAML document, found more ('---' separators)")
    return documents[0] if documents else None


def _yaml_error(file: str, err: yaml.MarkedYAMLError) -> ScenarioError:
    mark = err.problem_mark or err.context_mark
    what = _clip_line(err.problem or err.context or "invalid YAML")
    if mark is None:
        return ScenarioError(file, f"YAML error: {what}")
    where = f"line {mark.line + 1}, column {mark.column + 1}"
    return ScenarioError(file, f"YAML error at {where}: {what}")


def _clip_line(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= 100 else text[:97] + "..."


def _line_column(text: str, position: int) -> tuple[int, int]:
    line_start = text.rfind("\n", 0, position) + 1
    return text.count("\n", 0, position) + 1, position - line_start + 1


# ------------------------------------------------------------------- validation


def _reject_unknown(
    where: _Where, mapping: dict, known: tuple[str, ...], what: str, prefix: str = ""
) -> None:
    for key in mapping:
        if not isinstance(key, str) or key not in known:
            if known:
                message = f"unknown {what}, expected one of {_names(known)}"
            else:
                message = f"unknown {what}, '{where.op}' takes no fields"
            raise where.error(message, field=prefix + _clip(str(key)))


def _convert(where: _Where, spec: FieldSpec, value: Any, field: str) -> Any:
    try:
        return spec.convert(value)
    except _Invalid as err:
        message = err.detail or f"expected {spec.expected}, got {_describe(value)}"
        raise where.error(message, field=field) from None


def _fields(where: _Where, mapping: dict, specs: tuple[FieldSpec, ...]) -> dict[str, Any]:
    """Convert every field of a step, filling defaults; unknown keys already rejected."""
    args = {}
    for spec in specs:
        if spec.name in mapping:
            args[spec.name] = _convert(where, spec, mapping[spec.name], spec.name)
        elif spec.required:
            raise where.error(f"missing, expected {spec.expected}", field=spec.name)
        else:
            args[spec.name] = spec.default
    return args


def _version(where: _Where, doc: dict) -> None:
    if "version" not in doc:
        raise where.error(f"missing, expected {FORMAT_VERSION}", field="version")
    value = doc["version"]
    if not (_is_int(value) and value == FORMAT_VERSION):
        raise where.error(f"expected {FORMAT_VERSION}, got {_describe(value)}", field="version")


def _name(where: _Where, doc: dict) -> str:
    expected = "a name of lowercase letters, digits and '-'"
    if "name" not in doc:
        raise where.error(f"missing, expected {expected}", field="name")
    value = doc["name"]
    if isinstance(value, str) and _SCENARIO_NAME.fullmatch(value):
        return value
    raise where.error(f"expected {expected}, got {_describe(value)}", field="name")


def _description(where: _Where, doc: dict) -> str:
    value = doc.get("description")
    if value is None:  # absent, or a bare `description:`
        return ""
    if isinstance(value, str):
        return value
    raise where.error(f"expected text, got {_describe(value)}", field="description")


def _design(where: _Where, doc: dict) -> str | None:
    # Not checked against the known designs: designs can be user-defined, and
    # the runner reports an unknown one (the command line can also override it).
    value = doc.get("design")
    if value is None or (isinstance(value, str) and value.strip()):
        return value
    raise where.error(f"expected a design name, got {_describe(value)}", field="design")


def _config(where: _Where, doc: dict) -> Config:
    raw = doc.get("config")
    if raw is None:
        return Config()
    if not isinstance(raw, dict):
        raise where.error(f"expected a mapping of settings, got {_describe(raw)}", field="config")
    known = tuple(spec.name for spec in _CONFIG_FIELDS)
    _reject_unknown(where, raw, known, "key", prefix="config.")
    values = {
        spec.name: _convert(where, spec, raw[spec.name], f"config.{spec.name}")
        for spec in _CONFIG_FIELDS
        if spec.name in raw
    }
    return Config(**values)


def _expect(where: _Where, doc: dict, nsteps: int) -> dict[str, dict[str, Expected]]:
    """{kernel: {design: Expected}}: a design's verdict holds under every kernel, or (the
    addition of per-kernel expectations) a mapping of kernel versions to verdicts gives one
    per kernel named, and none under a kernel it leaves out."""
    raw = doc.get("expect")
    by_kernel: dict[str, dict[str, Expected]] = {k: {} for k in KERNELS}
    if raw is None:
        return by_kernel
    if not isinstance(raw, dict):
        raise where.error(
            f"expected a mapping of design name to verdict, got {_describe(raw)}", field="expect"
        )
    for design, verdict in raw.items():
        if not isinstance(design, str) or not design.strip():
            raise where.error(
                f"expected design names as keys, got {_describe(design)}", field="expect"
            )
        field_ = f"expect.{_clip(design)}"
        if isinstance(verdict, dict) and verdict and not any(k in _EXPECT_KEYS for k in verdict):
            for kernel, v in verdict.items():
                if not _is_kernel(kernel):
                    raise where.error(
                        f"expected a kernel version ({_names(repr(k) for k in KERNELS)}) or "
                        f"the keys kind, step, page, got {_describe(kernel)}", field=field_)
                name = _kernel(kernel)
                by_kernel[name][design] = _verdict(where, v, f"{field_}.{name}", nsteps)
        else:
            for kernel in KERNELS:
                by_kernel[kernel][design] = _verdict(where, verdict, field_, nsteps)
    return by_kernel


def _preemptions(where: _Where, doc: dict) -> dict:
    """`preemptions: N` (every design) or `{design: N, ...}`: the default preemption bound of
    the file's parallel blocks, N an integer >= 0. {"*": N} for the plain form."""
    raw = doc.get("preemptions")
    if raw is None:
        return {}
    want = "an integer >= 0, or a mapping of design name to an integer >= 0"
    if isinstance(raw, dict):
        out = {}
        for design, n in raw.items():
            if not isinstance(design, str) or not design.strip():
                raise where.error(f"expected design names as keys, got {_describe(design)}",
                                  field="preemptions")
            out[design] = _bound(where, n, f"preemptions.{_clip(design)}", "an integer >= 0")
        return out
    return {"*": _bound(where, raw, "preemptions", want)}


def _bound(where: _Where, value: Any, field_: str, want: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise where.error(f"expected {want}, got {_describe(value)}", field=field_)


def _is_kernel(key: Any) -> bool:
    try:
        _kernel(key)
    except _Invalid:
        return False
    return True


def _verdict(where: _Where, verdict: Any, field_: str, nsteps: int) -> Expected:
    """One design's verdict: the plain form or the full form {kind, step, page}."""
    if isinstance(verdict, dict):
        return _expected_first(where, verdict, field_, nsteps)
    if isinstance(verdict, str) and verdict in VERDICTS:
        return Expected(verdict)
    raise where.error(
        f"expected pass, fail or one of {_names(VIOLATION_KINDS)} "
        f"(or a mapping {{kind, step, page}}, or a mapping of kernel versions "
        f"{_names(repr(k) for k in KERNELS)} to those), got {_describe(verdict)}",
        field=field_,
    )


_EXPECT_KEYS = ("kind", "step", "page")


def _expected_first(where: _Where, raw: dict, field: str, nsteps: int) -> Expected:
    """The full form: the first violation's kind and step (required) and page (absent or
    null: the violation names no page)."""
    _reject_unknown(where, raw, _EXPECT_KEYS, "key", prefix=field + ".")
    for key in ("kind", "step"):
        if key not in raw:
            raise where.error(f"missing, expected {_EXPECT_WANT[key](nsteps)}", field=f"{field}.{key}")
    kind, step, page = raw["kind"], raw["step"], raw.get("page")
    if not (isinstance(kind, str) and kind in VIOLATION_KINDS):
        raise where.error(f"expected {_EXPECT_WANT['kind'](nsteps)}, got {_describe(kind)}",
                          field=f"{field}.kind")
    if not (_is_int(step) and 1 <= step <= nsteps):
        raise where.error(f"expected {_EXPECT_WANT['step'](nsteps)}, got {_describe(step)}",
                          field=f"{field}.step")
    if not (page is None or (_is_int(page) and 0 <= page < MAX_VMA_PAGES)):
        raise where.error(f"expected {_EXPECT_WANT['page'](nsteps)}, got {_describe(page)}",
                          field=f"{field}.page")
    return Expected(kind, step, page)


_EXPECT_WANT = {
    "kind": lambda n: f"one of {_names(VIOLATION_KINDS)}",
    "step": lambda n: f"a step number of this scenario, 1-{n}",
    "page": lambda n: f"a page index 0-{MAX_VMA_PAGES - 1} or null",
}


def _steps(where: _Where, doc: dict) -> tuple[Step, ...]:
    if "steps" not in doc:
        raise where.error("missing, expected a non-empty list of steps", field="steps")
    raw = doc["steps"]
    if not isinstance(raw, list) or not raw:
        raise where.error(
            f"expected a non-empty list of steps, got {_describe(raw)}", field="steps"
        )
    steps = []
    budget = MAX_TOTAL_PAGE_INDICES
    values = len(raw)          # write values of lane steps are numbered after every step
    for index, item in enumerate(raw, start=1):
        if isinstance(item, dict) and len(item) == 1 and PARALLEL in item:
            step = _parallel(where.file, index, item[PARALLEL], values)
            values += sum(len(lane) for lane in step.args["lanes"])
        else:
            step = _step(where.file, index, item)
        for inner in _inner(step):
            budget = _page_budget(where, inner, index, budget)
        steps.append(step)
    return tuple(steps)


def _inner(step: Step) -> tuple[Step, ...]:
    """The step itself, or the steps of a parallel block's lanes."""
    if step.op != PARALLEL:
        return (step,)
    return tuple(s for lane in step.args["lanes"] for s in lane)


def _page_budget(where: _Where, step: Step, index: int, budget: int) -> int:
    """The page-index budget left after `step`."""
    pages = step.args.get("pages")
    if isinstance(pages, (tuple, range)):
        # Every page named costs work: a short file (or one alias repeated) could
        # otherwise ask for hours of it, e.g. thousands of 'pages: 0-65535'.
        budget -= len(pages)
        if budget < 0:
            raise _Where(where.file, index, step.op).error(
                f"scenario too large: more than {MAX_TOTAL_PAGE_INDICES} page indices "
                "in all steps together",
                field="pages",
            )
    return budget


PARALLEL = "parallel"
NOT_IN_LANES = ("mmap", "fork", "exit")   # they change which mms and VMAs exist
MAX_LANES = 3


def _parallel(file: str, index: int, body: Any, values: int) -> Step:
    """Addition (issue 14): `- parallel: [lane, lane(, lane)]`, a lane one step or a list of
    steps, each lane run by one kernel thread (docs/concurrency.md)."""
    where = _Where(file, step=index, op=PARALLEL)
    if not isinstance(body, list) or not 2 <= len(body) <= MAX_LANES:
        raise where.error(f"expected a list of 2 to {MAX_LANES} lanes (each one step or a list "
                          f"of steps), got {_describe(body)}", field=PARALLEL)
    lanes = []
    for n, raw in enumerate(body):
        items = raw if isinstance(raw, list) else [raw]
        if not items:
            raise where.error("expected a step or a non-empty list of steps, got an empty list",
                              field=f"{PARALLEL}[{n}]")
        lane = []
        for item in items:
            if isinstance(item, dict) and PARALLEL in item:
                raise where.error("a parallel block cannot be nested in a lane",
                                  field=f"{PARALLEL}[{n}]")
            step = _step(file, index, item)
            if step.op in NOT_IN_LANES:
                raise where.error(f"{step.op} cannot run in a parallel lane (lanes may not "
                                  f"create or end processes or VMAs: {_names(NOT_IN_LANES)})",
                                  field=f"{PARALLEL}[{n}]")
            values += 1
            lane.append(replace(step, value_base=values))
        lanes.append(tuple(lane))
    _mprotect_alone_in_its_mm(where, lanes)
    return Step(index=index, op=PARALLEL, args={"lanes": tuple(lanes)})


def _mprotect_alone_in_its_mm(where: _Where, lanes: list) -> None:
    """`mprotect` holds its mm's mmap_lock for writing from the VMA change to the end of
    change_pte_range, which keeps every fault of that mm out; the model has no mmap_lock, so
    a lane with an mprotect may not share its process with another lane."""
    for n, lane in enumerate(lanes):
        for proc in {s.args.get("proc") for s in lane if s.op == "mprotect"}:
            other = next((k for k, ln in enumerate(lanes) if k != n
                          and any(s.args.get("proc") == proc for s in ln)), None)
            if other is not None:
                raise where.error(f"mprotect of {proc} cannot run beside another lane of "
                                  f"{proc} (lane {other}): mprotect holds the mmap_lock for "
                                  f"writing, which the model does not take", field=f"{PARALLEL}[{n}]")


def _split_step(where: _Where, raw: Any) -> tuple[str, Any]:
    """Return (op, body) for `- op: body`, or for a bare `- evict` / `- swapoff` /
    `- drop_caches`."""
    if isinstance(raw, str):
        op, body = raw, None
        if op in OPS and any(spec.required for spec in OPS[op]):
            raise replace(where, op=op).error(
                f"expected a mapping {{{op}: {{...}}}} with fields "
                f"{_names(s.name for s in OPS[op])}, got the bare op name"
            )
    elif isinstance(raw, dict) and len(raw) == 1:
        ((op, body),) = raw.items()
    elif isinstance(raw, dict) and raw:
        keys = [_clip(str(key)) for key in raw]
        ops = [key for key in raw if isinstance(key, str) and key in OPS]
        hint = f" (are the fields indented under '{ops[0]}'?)" if len(ops) == 1 else ""
        raise where.error(
            f"expected a one-key mapping {{op: {{fields}}}}, got keys {_clip(_names(keys))}{hint}"
        )
    else:
        raise where.error(f"expected a one-key mapping {{op: {{fields}}}}, got {_describe(raw)}")
    if not isinstance(op, str) or op not in OPS:
        raise where.error(f"unknown op {_describe(op)}, expected one of {_names(OPS)}")
    return op, body


def _step(file: str, index: int, raw: Any) -> Step:
    op, body = _split_step(_Where(file, step=index), raw)
    where = _Where(file, step=index, op=op)
    specs = OPS[op]
    if body is None:  # `- evict:` or a body left empty; required fields report below
        body = {}
    if not isinstance(body, dict):
        if not specs:
            raise where.error(f"expected no fields (null or {{}}), got {_describe(body)}")
        raise where.error(
            f"expected a mapping of fields {_names(s.name for s in specs)}, got {_describe(body)}"
        )
    _reject_unknown(where, body, tuple(spec.name for spec in specs), "field")
    args = _fields(where, body, specs)
    if op == "fork" and args["child"] == args["proc"]:
        raise where.error(
            f"expected a process other than proc, got {_describe(args['child'])}", field="child"
        )
    return Step(index=index, op=op, args=args)


def _scenario(doc: Any, file: str) -> Scenario:
    where = _Where(file)
    if doc is None:
        raise where.error("empty scenario, expected a mapping with version, name and steps")
    if not isinstance(doc, dict):
        raise where.error(
            "expected a mapping with version, name and steps at the top level, "
            f"got {_describe(doc)}"
        )
    _reject_unknown(where, doc, _TOP_KEYS, "key")
    _version(where, doc)  # first: with another version, the other checks mean nothing
    name, description = _name(where, doc), _description(where, doc)
    design, config = _design(where, doc), _config(where, doc)
    steps = _steps(where, doc)
    by_kernel = _expect(where, doc, len(steps))
    return Scenario(
        file=file,
        name=name,
        description=description,
        design=design,
        config=config,
        expect=by_kernel[config.kernel],
        steps=steps,
        expect_by_kernel=by_kernel,
        preemptions=_preemptions(where, doc),
    )


# ------------------------------------------------------------------ public API


def parse_scenario(text: str | bytes, file: str = "<string>") -> Scenario:
    """Parse and validate scenario text; raise ScenarioError (only) on bad input."""
    if isinstance(text, (bytes, bytearray, memoryview)):
        text = _decode(bytes(text), file)
    return _scenario(_load_document(text, file), file)


def read_input(path: str | os.PathLike, error: type[ScenarioError] = ScenarioError
               ) -> tuple[str, bytes]:
    """(file name for messages, bytes) of an input file; an unreadable one raises `error`
    (ScenarioError or a subclass, e.g. the trace loader's)."""
    file = os.fsdecode(path)
    try:
        with open(path, "rb") as stream:
            return file, stream.read()
    except OSError as err:
        raise error(file, f"cannot read file: {err.strerror or err}") from None
    except ValueError as err:  # e.g. a NUL byte in the path
        raise error(file, f"cannot read file: {err}") from None


def with_kernel(scenario: Scenario, kernel: str | None) -> Scenario:
    """The scenario with `config.kernel` set to `kernel` (a command line's `--kernel`, which
    overrides the file's value); unchanged when kernel is None. A name outside KERNELS raises
    ScenarioError naming the option."""
    if kernel is None:
        return scenario
    if kernel not in KERNELS:
        raise ScenarioError("--kernel", f"expected one of {_names(KERNELS)}, got {_describe(kernel)}")
    return replace(scenario, config=replace(scenario.config, kernel=kernel),
                   expect=scenario.expect_by_kernel.get(kernel, scenario.expect))


def with_reverts(scenario: Scenario, reverts: list[str] | tuple[str, ...] | None) -> Scenario:
    """The scenario with the fixes `reverts` (a command line's `--revert`) taken out, added to
    the file's `config.revert`; an unknown id raises ScenarioError naming the option."""
    if not reverts:
        return scenario
    unknown = [r for r in reverts if r not in REVERTS]
    if unknown:
        raise ScenarioError("--revert", f"expected one of {_names(REVERTS)} (see `mteswap "
                            f"reverts`), got {_describe(unknown[0])}")
    merged = tuple(dict.fromkeys(scenario.config.revert + tuple(reverts)))
    return replace(scenario, config=replace(scenario.config, revert=merged))


def load_scenario(path: str | os.PathLike) -> Scenario:
    """Read and parse a scenario file; unreadable files raise ScenarioError."""
    file, data = read_input(path)
    return parse_scenario(data, file)
