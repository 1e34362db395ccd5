"""Finding a design from what the user typed: a built-in name, `path/to/file.py:ClassName`, or a
name an installed package registers under the entry-point group `mteswap.designs`.

    load_design("merged")                          # mteswap.designs.BUILTIN
    load_design("my_designs.py:EagerInvalidate")   # a class in a Python file
    load_design("my-design")                       # [project.entry-points."mteswap.designs"]

Every failure is a `mteswap.designs.UnknownDesign` (a ValueError) with a one-line message that
names the spec (and the file, for a file design); an exception raised by the user's code while
importing the file or building the design is reduced to its one-line summary, never a traceback.
Built-in names take precedence over entry points of the same name.
"""

from __future__ import annotations

import importlib.util
import itertools
import sys
import types
from importlib import metadata
from pathlib import Path
from typing import Callable

from mteswap.designs import BUILTIN, UnknownDesign
from mteswap.designs.base import Design
from mteswap.designs.legacy import adapt

ENTRY_POINT_GROUP = "mteswap.designs"

# The members every design has: the attributes annotated on the Protocol and its methods.
ATTRIBUTES = tuple(n for n in getattr(Design, "__annotations__", {}) if not n.startswith("_"))
HOOKS = tuple(n for n, v in vars(Design).items() if callable(v) and not n.startswith("_"))

_TIP = "tip: subclass mteswap.designs.merged.Merged and override only what differs"
_MAX_DETAIL = 160
_module_ids = itertools.count(1)
_file_cache: dict[tuple, object] = {}   # (resolved path, mtime_ns, size, class) -> class or object


# --------------------------------------------------------------------------------- public API


def load_design(spec: str, *, files: bool = True) -> Design:
    """A design instance for `spec` (see the module docstring). With files=False only names
    (built-in or entry point) are accepted: a scenario file may name a design but not make
    `mteswap` import a Python file."""
    return design_factory(spec, files=files)()


def design_factory(spec: str, *, files: bool = True) -> Callable[[], Design]:
    """Resolve and validate `spec` once; the result makes a fresh, validated instance per call
    (the same instance each time when an entry point or file gives an instance, not a class).

    The first instance is built here, so constructor errors surface now, as UnknownDesign."""
    if not isinstance(spec, str) or not spec.strip():
        raise UnknownDesign(f"expected a design name or path/to/file.py:ClassName, got {spec!r}")
    spec = spec.strip()
    if spec in BUILTIN:
        return _factory(BUILTIN[spec], spec, origin=f"built-in design {spec!r}")
    if _looks_like_file(spec):
        if not files:
            raise UnknownDesign(
                f"design {spec!r}: a scenario file may only name a design (built-in or installed); "
                f"give a design file on the command line with --design")
        return _file_factory(spec)
    entry = _entry_points().get(spec)
    if entry is None:
        raise UnknownDesign(_unknown_message(spec))
    return _entry_point_factory(entry)


def available_designs() -> dict[str, str]:
    """{name: summary}: the built-in designs in BUILTIN order, then the entry-point designs in
    name order (one whose name is taken by a built-in design is left out). An entry point that
    cannot be loaded is listed with the reason as its summary."""
    out = {name: _one_line(getattr(cls, "summary", "")) for name, cls in BUILTIN.items()}
    for name, entry in sorted(_entry_points().items()):
        try:
            out[name] = _one_line(load_design(name).summary)
        except UnknownDesign as err:
            out[name] = f"(cannot be loaded: {err})"
    return out


def entry_point_names() -> list[str]:
    """Names registered under the `mteswap.designs` entry-point group (built-in names excluded)."""
    return sorted(_entry_points())


# --------------------------------------------------------------------------------- resolution


def _looks_like_file(spec: str) -> bool:
    """`path/to/file.py:ClassName`, or something clearly meant as a file (`x.py`, `dir/x`)."""
    return ":" in spec or spec.endswith(".py") or "/" in spec or "\\" in spec


def _unknown_message(spec: str) -> str:
    known = list(BUILTIN) + entry_point_names()
    return (f"unknown design {spec!r}; known: {', '.join(known)} "
            f"(or give a design file as path/to/file.py:ClassName)")


def _entry_points() -> dict[str, metadata.EntryPoint]:
    found: dict[str, metadata.EntryPoint] = {}
    try:
        eps = metadata.entry_points(group=ENTRY_POINT_GROUP)
    except Exception:   # a broken installed distribution must not break the CLI
        return found
    for ep in eps:
        if ep.name not in BUILTIN and ep.name not in found:   # first one on sys.path wins
            found[ep.name] = ep
    return found


def _entry_point_factory(ep: metadata.EntryPoint) -> Callable[[], Design]:
    where = f"design {ep.name!r} (entry point {ep.value!r})"
    try:
        obj = ep.load()
    except BaseException as err:   # noqa: B036 - SystemExit from user code included
        if isinstance(err, KeyboardInterrupt):
            raise
        raise UnknownDesign(f"{where}: cannot be loaded: {_summary(err)}") from None
    # The entry-point name is the design's name on the command line and in `expect`.
    return _factory(obj, ep.name, origin=where, rename=ep.name)


def _file_factory(spec: str) -> Callable[[], Design]:
    path_text, sep, attr = spec.rpartition(":")
    if not sep or not path_text:
        raise UnknownDesign(f"design {spec!r}: a design file needs a class: path/to/file.py:ClassName")
    attr = attr.strip()
    if not attr.isidentifier():
        raise UnknownDesign(f"design {spec!r}: {attr!r} is not a class name (path/to/file.py:ClassName)")
    path = Path(path_text).expanduser()
    try:
        resolved = path.resolve()
        st = resolved.stat()
    except OSError as err:
        raise UnknownDesign(f"design file {path_text}: cannot be read: {err.strerror or err}") from None
    if not resolved.is_file():
        raise UnknownDesign(f"design file {path_text}: not a file")
    key = (str(resolved), st.st_mtime_ns, st.st_size, attr)
    obj = _file_cache.get(key)
    if obj is None:
        module = _import_file(path_text, resolved)
        if not hasattr(module, attr):
            classes = sorted(n for n, v in vars(module).items()
                             if isinstance(v, type) and not n.startswith("_")
                             and getattr(v, "__module__", None) == module.__name__)
            hint = f" (classes defined there: {', '.join(classes)})" if classes else ""
            raise UnknownDesign(f"design file {path_text}: no class {attr!r}{hint}")
        obj = getattr(module, attr)
    where = f"design file {path_text}: {attr}"
    factory = _factory(obj, None, origin=where)
    _file_cache[key] = obj
    return factory


def _import_file(shown: str, path: Path):
    """Import the file as a fresh module with a unique name (two files called designs.py, or
    the same file imported twice, never clash in sys.modules)."""
    name = f"mteswap_user_design_{next(_module_ids)}_{_identifier(path.stem)}"
    try:
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise ImportError("not a Python source file")
        module = importlib.util.module_from_spec(spec)
    except Exception as err:
        raise UnknownDesign(f"design file {shown}: cannot be imported: {_summary(err)}") from None
    sys.modules[name] = module   # dataclasses, typing and pickle look the module up there
    try:
        spec.loader.exec_module(module)
    except BaseException as err:   # noqa: B036 - SystemExit from user code included
        sys.modules.pop(name, None)
        if isinstance(err, KeyboardInterrupt):
            raise
        raise UnknownDesign(f"design file {shown}: error while importing it: {_summary(err)}") from None
    return module


# --------------------------------------------------------------------------------- validation


def _factory(obj, name: str | None, origin: str, rename: str | None = None) -> Callable[[], Design]:
    """Validate `obj` (a design class, or an instance) and return a maker of instances. A design
    written with the old hook names is adapted first (legacy.py)."""
    if isinstance(obj, type):
        obj = adapt(obj)
        missing = _missing(obj)
        if missing:
            raise UnknownDesign(_missing_message(origin, missing))

        def make() -> Design:
            try:
                inst = obj()
            except BaseException as err:   # noqa: B036
                if isinstance(err, KeyboardInterrupt):
                    raise
                raise UnknownDesign(f"{origin}: constructor failed: {_summary(err)}") from None
            return _checked(inst, origin, rename)
    else:
        if callable(obj) or isinstance(obj, types.ModuleType):
            if _missing(obj):   # a function or a module, not a design instance
                kind = type(obj).__name__
                raise UnknownDesign(f"{origin}: is a {kind}, expected a design class; {_TIP}")
        inst = _checked(obj, origin, rename)

        def make() -> Design:
            return inst

    first = make()          # constructor errors and bad name/summary surface now
    if name is None:        # a file design: its name must not pretend to be a built-in one
        taken = BUILTIN.get(first.name)
        if taken is not None:
            raise UnknownDesign(
                f"{origin}: its name {first.name!r} is the name of a built-in design; "
                f"give the class its own `name = \"...\"`")
    pending = [first]

    def fresh() -> Design:
        return pending.pop() if pending else make()

    return fresh


def _missing(obj) -> list[str]:
    missing = [n for n in ATTRIBUTES if not hasattr(obj, n)]
    missing += [n for n in HOOKS if not callable(getattr(obj, n, None))]
    return missing


def _missing_message(origin: str, missing: list[str]) -> str:
    return f"{origin}: not a design, missing {', '.join(missing)}; {_TIP}"


def _checked(inst, origin: str, rename: str | None) -> Design:
    adapted = adapt(type(inst))
    if adapted is not type(inst):
        try:
            inst.__class__ = adapted
        except TypeError as err:
            raise UnknownDesign(f"{origin}: cannot adapt its old hook names: {_summary(err)}") from None
    missing = _missing(inst)
    if missing:
        raise UnknownDesign(_missing_message(origin, missing))
    if rename is not None and getattr(inst, "name", None) != rename:
        try:
            inst.name = rename
        except Exception as err:
            raise UnknownDesign(f"{origin}: cannot set its name to {rename!r}: {_summary(err)}") from None
    name, summary = inst.name, inst.summary
    if not isinstance(name, str) or not name or name != name.strip() or any(c.isspace() for c in name):
        raise UnknownDesign(f"{origin}: `name` must be a non-empty string without spaces, got {_clip(repr(name))}")
    if not isinstance(summary, str):
        raise UnknownDesign(f"{origin}: `summary` must be a string, got {_clip(repr(summary))}")
    return inst


# --------------------------------------------------------------------------------- messages


def _summary(err: BaseException) -> str:
    """`Type: first line of the message`; a SyntaxError keeps its line number."""
    if isinstance(err, SyntaxError) and err.lineno is not None:
        text = f"{type(err).__name__}: {err.msg} (line {err.lineno})"
    else:
        lines = str(err).strip().splitlines()
        text = f"{type(err).__name__}: {lines[0]}" if lines else type(err).__name__
    return _clip(text)


def _clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MAX_DETAIL else text[: _MAX_DETAIL - 1] + "…"


def _one_line(text) -> str:
    return " ".join(str(text).split())


def _identifier(text: str) -> str:
    out = "".join(c if c.isalnum() or c == "_" else "_" for c in text)
    return out or "design"
