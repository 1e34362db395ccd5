"""Arch-hook designs. Each module holds one design; `get_design(name)` builds one by name."""

from __future__ import annotations

from mteswap.designs.base import Design
from mteswap.designs.merged import Merged

BUILTIN = {cls.name: cls for cls in (Merged,)}
DEFAULT = "merged"


class UnknownDesign(ValueError):
    pass


def design_names() -> list[str]:
    return list(BUILTIN)


def get_design(name: str) -> Design:
    """A fresh instance of the named design."""
    try:
        return BUILTIN[name]()
    except KeyError:
        raise UnknownDesign(
            f"unknown design {name!r}; known: {', '.join(design_names())}") from None


__all__ = ["Design", "BUILTIN", "DEFAULT", "UnknownDesign", "design_names", "get_design"]
