"""Designs written against the interface before the hooks took their arm64 names.

Until the hooks were named as arm64 names them (base.py), a design implemented
`thp_swap_supported`, `prepare_to_swap`, `swap_restore(m, entry, folio, page)` (one fault),
`swap_invalidate_page` and `swap_invalidate_area`, and a `Merged` subclass overrode
`arch_swap_restore(m, first_entry, folio)` (one folio). `adapt` turns such a design into one of
the current interface, so that files and packages written then keep working:
- each old hook is called under its new name, with the same arguments;
- `arch_swap_restore` of a batch of k faults calls the old one-fault hook once per fault, in
  turn (`each_fault`), which is what a batch means.
Built-in designs keep the old names as thin aliases (`LegacyNames`), so that an old override
calling `super().swap_restore(...)` reaches the built-in hook.
"""

from __future__ import annotations

import inspect

# old name -> new name, for the hooks whose arguments did not change
RENAMED = {
    "thp_swap_supported": "arch_thp_swp_supported",
    "prepare_to_swap": "arch_prepare_to_swap",
    "swap_invalidate_page": "arch_swap_invalidate_page",
    "swap_invalidate_area": "arch_swap_invalidate_area",
}
_BUILTIN_MODULES = ("mteswap.designs.",)


def _user_defined(cls, name: str):
    """The function `name` as the nearest class of the MRO that is not built in defines it."""
    for klass in cls.__mro__:
        if klass.__module__.startswith(_BUILTIN_MODULES) or klass is object:
            continue
        if name in vars(klass):
            return vars(klass)[name]
    return None


def _old_folio_restore(func) -> bool:
    """An `arch_swap_restore(self, m, first_entry, folio)` written for one folio (no k)."""
    try:
        params = inspect.signature(func).parameters
    except (TypeError, ValueError):
        return False
    kinds = {p.kind for p in params.values()}
    return "k" not in params and inspect.Parameter.VAR_POSITIONAL not in kinds


def needs_adapter(cls) -> list[str]:
    """The old hooks `cls` defines outside the built-in designs (empty: current interface)."""
    old = [name for name in (*RENAMED, "swap_restore") if _user_defined(cls, name)]
    restore = _user_defined(cls, "arch_swap_restore")
    if restore is not None and _old_folio_restore(restore):
        old.append("arch_swap_restore(m, first_entry, folio)")
    return old


def adapt(cls):
    """`cls`, or a subclass of it that serves the current interface from its old hooks."""
    if not isinstance(cls, type) or not needs_adapter(cls):
        return cls
    members = {"__module__": cls.__module__, "__qualname__": cls.__qualname__,
               "__doc__": cls.__doc__}
    for old, new in RENAMED.items():
        if _user_defined(cls, old):
            members[new] = _forward(old)
    if not hasattr(cls, "arch_swap_invalidate_range"):
        members["arch_swap_invalidate_range"] = _invalidate_each
    if _user_defined(cls, "swap_restore"):
        members["arch_swap_restore"] = _per_fault_restore
    elif _user_defined(cls, "arch_swap_restore"):
        members["arch_swap_restore"] = _per_folio_restore(_user_defined(cls, "arch_swap_restore"))
    return type(cls.__name__, (cls,), members)


def _forward(old: str):
    def hook(self, *args):
        return getattr(self, old)(*args)
    hook.__name__ = RENAMED[old]
    return hook


def _invalidate_each(self, m, type_: int, offset: int, nr: int) -> None:
    """`arch_swap_invalidate_page` of each slot, for a design that predates the range hook."""
    for off in range(offset, offset + nr):
        self.arch_swap_invalidate_page(m, type_, off)


def _per_fault_restore(self, m, entry: int, folio, page, k: int = 1) -> None:
    """The old `swap_restore(m, entry, folio, page)`, once per fault of the batch."""
    from mteswap.designs.common import each_fault
    for e, f, p in each_fault(m, entry, folio, page, k):
        self.swap_restore(m, e, f, p)


def _per_folio_restore(old):
    def arch_swap_restore(self, m, entry: int, folio, page=None, k: int = 1) -> None:
        """The old `arch_swap_restore(m, first_entry, folio)`, once per folio of the batch."""
        from mteswap.designs.common import each_fault, folio_swap
        for e, f, _ in each_fault(m, entry, folio, page or m.pages[folio.pfn], k):
            old(self, m, folio_swap(e, f), f)
    return arch_swap_restore


class LegacyNames:
    """The old hook names on the built-in designs, for old overrides that call
    `super().prepare_to_swap(...)` and the like: each runs the built-in hook of the class."""

    def thp_swap_supported(self, m) -> bool:
        return _builtin(self, "arch_thp_swp_supported")(self, m)

    def prepare_to_swap(self, m, folio) -> int:
        return _builtin(self, "arch_prepare_to_swap")(self, m, folio)

    def swap_restore(self, m, entry: int, folio, page) -> None:
        return _builtin(self, "arch_swap_restore")(self, m, entry, folio, page, 1)

    def swap_invalidate_page(self, m, type_: int, offset: int) -> None:
        return _builtin(self, "arch_swap_invalidate_page")(self, m, type_, offset)

    def swap_invalidate_area(self, m, type_: int) -> None:
        return _builtin(self, "arch_swap_invalidate_area")(self, m, type_)


def _builtin(obj, name: str):
    """`name` as the nearest built-in class of obj's MRO defines it."""
    for klass in type(obj).__mro__:
        if klass.__module__.startswith(_BUILTIN_MODULES) and name in vars(klass):
            return vars(klass)[name]
    raise AttributeError(name)
