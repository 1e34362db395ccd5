"""Operation trace files for `mteswap cost` (format: docs/trace-format.md).

A trace is a line-oriented text file, one operation per line, easy to produce with awk or
printf from a script or a real workload's log:

    # comment
    config folio_pages=1,16 swap_device=zram frames=8256 swap_slots=9216
    mmap proc=A vma=heap pages=4096 mte=1
    write proc=A vma=heap pages=0-4095 tag=distinct
    reclaim proc=A vma=heap pages=0-4095 keep_cached=1
    read proc=A vma=heap pages=3,9,100-131

Each operation line becomes exactly the step dict a scenario file holds
(`{"write": {"proc": "A", "vma": "heap", "pages": "0-4095", "tag": "distinct"}}`), with op and
field names unchanged and each value converted to the type the scenario op expects. This
module only does that conversion (and the trace syntax checks: `KEY=VALUE`, duplicate keys,
the page-list syntax, the config header); everything else is checked by the scenario loader
(`mteswap.scenario.load._scenario`), the one validator, and its errors are re-raised naming
the trace line instead of the step number.

Public API:

- `load_trace(path) -> TraceWorkload` and `parse_trace(text, file) -> TraceWorkload`
  raise `TraceError` (a `ScenarioError`) only, whatever the input bytes.
- `TraceWorkload.scenario()` is the validated `Scenario` (built once, at parse time).
- `TraceWorkload.locate(err)` turns a `ScenarioError` raised while running the scenario
  (unknown VMA, page out of range, out of frames, ...) into a `TraceError` naming the line.
- `write_trace(workload) -> str` writes any `Workload` in this format;
  `parse_trace(write_trace(w)).steps == w.steps` and the configs are equal.
"""

from __future__ import annotations

import dataclasses
import gc
import os
from dataclasses import dataclass, field

from mteswap.cost.workloads import Workload
from mteswap.scenario.load import (
    MAX_CONFIG_INT,
    MAX_TOTAL_PAGE_INDICES,
    MAX_VMA_PAGES,
    OPS,
    Config,
    Scenario,
    ScenarioError,
    _clip,
    read_input,
    _scenario,
)

__all__ = ["TraceError", "TraceWorkload", "load_trace", "parse_trace", "write_trace"]

NAME = "trace"
CONFIG = "config"            # the header keyword
_TRUE = ("1", "true")
_FALSE = ("0", "false")
_MAX_DIGITS = 18             # longer digit strings stay text: the loader reports them
_INDEX_DIGITS = 6            # a page index (< 65536) never needs more


# --------------------------------------------------------------------------- errors


class TraceError(ScenarioError):
    """Bad trace input: one line, `FILE: line N (op): field 'F': what was expected, got what`.

    `line` is the 1-based line of the trace file (None when no line is to blame, e.g. an
    empty trace); `step` is the 1-based step index the line became, when it became one.
    """

    def __init__(self, file: str, message: str, line: int | None = None,
                 field: str | None = None, op: str | None = None,
                 step: int | None = None) -> None:
        super().__init__(file, message, step=step, field=field, op=op)
        self.args = (file, message, line, field, op, step)   # pickling rebuilds the same error
        self.line = line

    def place(self) -> str | None:
        """The trace line when known, else the step as ScenarioError names it."""
        if self.line is None:
            return super().place()
        return f"line {self.line} ({self.op})" if self.op else f"line {self.line}"


class _Bad(Exception):
    """A value converter's complaint; the caller adds file, line, op and field."""


def _shown(text: str) -> str:
    return _clip(repr(text))


# --------------------------------------------------------------------------- values


def _str(value: str) -> str:
    return value


def _int(value: str) -> int | str:
    # Anything that is not a plain decimal stays text, and the loader says what it expected.
    if value.isdigit() and value.isascii() and len(value) <= _MAX_DIGITS:
        return int(value)
    return value


def _optional_int(value: str) -> int | str | None:
    return None if value == "none" else _int(value)


def _bool(value: str) -> bool:
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise _Bad(f"expected 1, 0, true or false, got {_shown(value)}")


def _index(item: str) -> int:
    if item.isdigit() and item.isascii() and len(item) <= _INDEX_DIGITS:
        index = int(item)
        if index < MAX_VMA_PAGES:
            return index
    raise _Bad(f"expected page indices 0-{MAX_VMA_PAGES - 1} in the list, got {_shown(item)}")


def _page_list(value: str) -> list[int]:
    """`1,3,5-7` -> [1, 3, 5, 6, 7]; one trailing comma is allowed (`5,` is the list [5])."""
    items = value.split(",")
    if items[-1] == "":
        items.pop()
    indices: list[int] = []
    append = indices.append
    plain = value.isascii()
    for item in items:
        if plain and item.isdigit() and len(item) <= _INDEX_DIGITS:   # the common case
            index = int(item)
            if index < MAX_VMA_PAGES:
                append(index)
                continue
        first, dash, last = item.partition("-")
        if not dash:
            append(_index(item) if item else _empty_item(value))
            continue
        if not first or not last:
            raise _Bad(f"expected a page list like 1,3,5-7, got item {_shown(item)}")
        start, end = _index(first), _index(last)
        if start > end:
            raise _Bad(f"expected ranges a-b with a <= b in the list, got {_shown(item)}")
        indices.extend(range(start, end + 1))
    return indices


def _empty_item(value: str) -> int:
    raise _Bad(f"expected a page list like 1,3,5-7, got an empty item in {_shown(value)}")


def _pages(value: str) -> int | str | list[int]:
    if "," in value:
        return _page_list(value)
    return _int(value)        # an index; 'a-b' and 'all' stay text, as in a scenario


def _folio_pages(value: str) -> list[int] | str:
    sizes = [_int(item) for item in value.split(",")]
    return sizes if all(isinstance(size, int) for size in sizes) else value


# Per field name, how its text becomes the value a scenario step holds.
FIELD_KINDS = {
    "proc": _str,
    "vma": _str,
    "child": _str,
    "pages": _pages,       # a page spec; `mmap`'s `pages` is a count (below)
    "mte": _bool,
    "keep_cached": _bool,
    "tag": _int,           # 0-15, or the text 'distinct'
}
_OP_KINDS = {op: {spec.name: FIELD_KINDS[spec.name] for spec in specs}
             for op, specs in OPS.items()}
_OP_KINDS["mmap"]["pages"] = _int


def _config_kind(default):
    if isinstance(default, bool):
        return _bool
    if isinstance(default, int):
        return _int
    if isinstance(default, str):
        return _str
    if isinstance(default, tuple):
        return _folio_pages
    return _optional_int      # tag_alloc_fail_after: a count, or none


# `revert` (issue 14) takes a fix out of the model: not a setting of a cost trace.
CONFIG_KINDS = {f.name: _config_kind(f.default) for f in dataclasses.fields(Config)
                if f.name != "revert"}


# --------------------------------------------------------------------------- parsing


@dataclass
class TraceWorkload(Workload):
    """A Workload read from a trace file. `lines[i]` is the line step i+1 came from;
    `config_lines` the line of each config key given in the header."""

    lines: tuple[int, ...] = field(default=(), repr=False)
    config_lines: dict[str, int] = field(default_factory=dict, repr=False)
    _validated: Scenario | None = field(default=None, repr=False, compare=False)

    @property
    def file(self) -> str:
        return self.params["file"]

    def scenario(self, file: str | None = None) -> Scenario:
        """The validated scenario (from parse time when the file name is the same);
        errors are TraceErrors naming the line."""
        file = self.file if file is None else file
        if self._validated is not None and self._validated.file == file:
            return self._validated
        try:
            return super().scenario(file)
        except ScenarioError as err:
            raise self.locate(err) from None

    def with_config(self, **changes) -> "TraceWorkload":
        """As Workload.with_config; the scenario validated at parse time no longer applies."""
        return dataclasses.replace(super().with_config(**changes), _validated=None)

    def locate(self, err: ScenarioError) -> ScenarioError:
        """`err` (a ScenarioError from validating or running this workload's scenario) as a
        TraceError naming the trace line of its step (or of its config key); a TraceError
        is returned unchanged."""
        if isinstance(err, TraceError):
            return err
        line, op = None, err.op
        if err.step is not None and 1 <= err.step <= len(self.lines):
            line = self.lines[err.step - 1]
        elif err.step is None and err.field is not None and err.field.startswith(CONFIG + "."):
            line = self.config_lines.get(err.field[len(CONFIG) + 1:])
            op = CONFIG if line is not None else op
        return TraceError(err.file, err.message, line=line, field=err.field, op=op,
                          step=err.step)


def _pairs(file: str, lineno: int, op: str, tokens: list[str], kinds: dict | None,
           known: tuple[str, ...], prefix: str = "") -> dict:
    """KEY=VALUE tokens -> {key: converted value}; unknown keys keep their text (the
    loader rejects them with the list of known ones)."""
    body: dict = {}
    for token in tokens:
        key, eq, value = token.partition("=")
        if not eq or not key:
            if not eq and token in known:
                raise TraceError(file, "missing '=VALUE'", line=lineno, field=prefix + token,
                                 op=op)
            raise TraceError(file, f"expected KEY=VALUE, got {_shown(token)}", line=lineno,
                             op=op)
        if key in body:
            raise TraceError(file, "given twice on this line", line=lineno,
                             field=prefix + _clip(key), op=op)
        convert = kinds.get(key) if kinds is not None else None
        if convert is None:
            body[key] = value
            continue
        try:
            body[key] = convert(value)
        except _Bad as err:
            raise TraceError(file, str(err), line=lineno, field=prefix + key, op=op) from None
    return body


def _sized_config(raw: dict, steps: list[dict]) -> None:
    """Fill absent `frames` / `swap_slots` the way the built-in workloads size them, from
    P = the pages of every `mmap` (twice that when the trace forks: copy-on-write copies):
    frames = P + 64, swap_slots = P rounded up to 512 + 1024, at most the format's limit."""
    if "frames" in raw and "swap_slots" in raw:
        return
    pages, forks = 0, False
    for step in steps:
        ((op, body),) = step.items()
        if op == "mmap":
            count = body.get("pages")
            if isinstance(count, int) and not isinstance(count, bool):
                pages += min(count, MAX_VMA_PAGES)
        elif op == "fork":
            forks = True
    if forks:
        pages *= 2
    raw.setdefault("frames", min(pages + 64, MAX_CONFIG_INT))
    raw.setdefault("swap_slots", min(-(-pages // 512) * 512 + 1024, MAX_CONFIG_INT))


def _no_nul(data, nul, newline, file: str) -> None:
    offset = data.find(nul)
    if offset >= 0:
        raise TraceError(file, "binary data (a NUL byte), expected a text file",
                         line=data.count(newline, 0, offset) + 1)


def _decode(data: bytes, file: str) -> str:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise TraceError(file, f"not valid UTF-8 (byte 0x{data[err.start]:02x}), expected a "
                               "text file", line=line) from None
    return text


def parse_trace(text: str | bytes, file: str = "<string>") -> TraceWorkload:
    """Parse and validate a trace; raise TraceError (only) on bad input."""
    # Building 100k+ small dicts and lists makes the cyclic GC rescan them over and over
    # (half the time of a large trace); nothing built here forms a cycle.
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _parse(text, file)
    finally:
        if enabled:
            gc.enable()


def _parse(text: str | bytes, file: str) -> TraceWorkload:
    if isinstance(text, (bytes, bytearray, memoryview)):
        data = bytes(text)
        _no_nul(data, b"\x00", b"\n", file)    # before decoding: binary is the better message
        text = _decode(data, file)
    _no_nul(text, "\x00", "\n", file)
    if text.startswith("\ufeff"):
        text = text[1:]                       # a BOM, as some Windows tools write
    steps: list[dict] = []
    lines: list[int] = []
    config: dict = {}
    config_lines: dict[str, int] = {}
    budget = MAX_TOTAL_PAGE_INDICES
    op_kinds, op_names = _OP_KINDS, {op: tuple(kinds) for op, kinds in _OP_KINDS.items()}
    config_known = tuple(CONFIG_KINDS)
    for lineno, line in enumerate(text.split("\n"), start=1):
        if "#" in line:
            line = line[:line.index("#")]
        tokens = line.split()
        if not tokens:
            continue
        op = tokens[0]
        if op == CONFIG:
            if steps:
                raise TraceError(file, "config lines must come before the first operation",
                                 line=lineno, op=op)
            if len(tokens) == 1:
                raise TraceError(file, "expected KEY=VALUE settings after 'config'",
                                 line=lineno, op=op)
            body = _pairs(file, lineno, op, tokens[1:], CONFIG_KINDS, config_known,
                          prefix=CONFIG + ".")
            for key, value in body.items():
                if key in config:
                    raise TraceError(file, f"already set on line {config_lines[key]}",
                                     line=lineno, field=f"{CONFIG}.{_clip(key)}", op=op)
                config[key] = value
                config_lines[key] = lineno
            continue
        kinds = op_kinds.get(op)
        body = _pairs(file, lineno, op, tokens[1:], kinds, op_names.get(op, ()))
        pages = body.get("pages")
        if type(pages) is list:
            # Lists are expanded here, ranges by the loader (which counts them): keep a
            # short file from asking for gigabytes with thousands of '0-65535,'.
            budget -= len(pages)
            if budget < 0:
                raise TraceError(file, f"trace too large: more than {MAX_TOTAL_PAGE_INDICES} "
                                       "page indices in page lists", line=lineno,
                                 field="pages", op=op)
        steps.append({op: body})
        lines.append(lineno)
    if not steps:
        raise TraceError(file, "no operations, expected lines like "
                               "'mmap proc=A vma=heap pages=16 mte=1'")
    _sized_config(config, steps)
    doc = {"version": 1, "name": f"cost-{NAME}", "config": config, "steps": steps}
    work = TraceWorkload(NAME, 0, {"file": file}, Config(), steps, tuple(lines), config_lines)
    try:
        validated = _scenario(doc, file)
    except ScenarioError as err:
        raise work.locate(err) from None
    work.config = validated.config
    head = work.doc()
    work._validated = dataclasses.replace(validated, name=head["name"],
                                          description=head["description"])
    return work


def load_trace(path: str | os.PathLike) -> TraceWorkload:
    """Read and parse a trace file; raise TraceError (only) on bad input."""
    file, data = read_input(path, TraceError)
    return parse_trace(data, file)


# --------------------------------------------------------------------------- writing


def _runs(indices: list[int]) -> list[str]:
    """[1, 3, 5, 6, 7] -> ['1', '3', '5-7']: runs of 3+ ascending pages become ranges,
    order and repeats kept (parsing expands them back to the same list)."""
    out: list[str] = []
    i, n = 0, len(indices)
    while i < n:
        j = i
        while j + 1 < n and indices[j + 1] == indices[j] + 1:
            j += 1
        if j - i >= 2:
            out.append(f"{indices[i]}-{indices[j]}")
        else:
            out.extend(str(x) for x in indices[i:j + 1])
        i = j + 1
    return out


def _text(value, where: str) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        if value and "#" not in value and "," not in value and not any(
                c.isspace() for c in value):
            return value
    elif isinstance(value, (list, tuple, range)) and value and all(
            isinstance(x, int) and not isinstance(x, bool) for x in value):
        text = ",".join(_runs(list(value)))
        return text if "," in text else text + ","   # a trailing comma keeps it a list
    raise ValueError(f"{where}: {value!r} cannot be written in a trace")


def _config_line(config: Config) -> str:
    parts = [CONFIG]
    for f in dataclasses.fields(config):
        if f.name not in CONFIG_KINDS:
            continue                          # revert: not a cost-trace setting
        value = getattr(config, f.name)
        if value is None:
            continue                          # absent means the default (None)
        if isinstance(value, tuple):
            parts.append(f"{f.name}={','.join(str(v) for v in value)}")
        else:
            parts.append(f"{f.name}={_text(value, f'config.{f.name}')}")
    return " ".join(parts)


def write_trace(workload: Workload) -> str:
    """The workload as trace text: a comment, one `config` line with every setting, then one
    line per step. Fields whose value is None are left out (absent = default). Raises
    ValueError for a value the format cannot hold (e.g. a name with spaces)."""
    about = " ".join(f"workload {workload.name} seed={workload.seed} {workload.params}".split())
    out = [f"# mteswap trace (docs/trace-format.md): {about}", _config_line(workload.config)]
    for index, step in enumerate(workload.steps, start=1):
        if isinstance(step, str):
            op, body = step, None
        elif isinstance(step, dict) and len(step) == 1:
            ((op, body),) = step.items()
        else:
            raise ValueError(f"step {index}: expected a one-key mapping, got {step!r}")
        if not isinstance(op, str) or not op or any(c.isspace() or c == "#" for c in op):
            raise ValueError(f"step {index}: op {op!r} cannot be written in a trace")
        if body is None:
            body = {}
        if not isinstance(body, dict):
            raise ValueError(f"step {index} ({op}): expected a mapping of fields, got {body!r}")
        parts = [op]
        for key, value in body.items():
            if not isinstance(key, str) or not key or any(
                    c.isspace() or c in "=#" for c in key):
                raise ValueError(f"step {index} ({op}): key {key!r} cannot be written in a trace")
            if value is not None:
                parts.append(f"{key}={_text(value, f'step {index} ({op}) field {key!r}')}")
        out.append(" ".join(parts))
    return "\n".join(out) + "\n"
