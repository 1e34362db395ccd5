"""Arch-hook designs. Each module holds one design; `get_design(name)` builds one by name."""

from __future__ import annotations

from mteswap.designs.base import Design
from mteswap.designs.folio_marker import FolioMarker
from mteswap.designs.merged import Merged
from mteswap.designs.merged_split_fix import MergedSplitFix
from mteswap.designs.per_folio_flag import PerFolioFlag
from mteswap.designs.restore_all_unmarked import RestoreAllUnmarked
from mteswap.designs.rfc_v1 import RfcV1
from mteswap.designs.rfc_v2 import RfcV2
from mteswap.designs.rfc_v3 import RfcV3
from mteswap.designs.split_before_swap import SplitBeforeSwap

# In the order of the discussion; `merged` is the default.
BUILTIN = {cls.name: cls for cls in (SplitBeforeSwap, RfcV1, RfcV2, RfcV3, RestoreAllUnmarked,
                                     FolioMarker, PerFolioFlag, Merged, MergedSplitFix)}
DEFAULT = "merged"


class UnknownDesign(ValueError):
    pass


def design_names() -> list[str]:
    return list(BUILTIN)


def get_design(name: str) -> Design:
    """A fresh instance of the named built-in design."""
    try:
        return BUILTIN[name]()
    except KeyError:
        raise UnknownDesign(
            f"unknown design {name!r}; known: {', '.join(design_names())}") from None


__all__ = ["Design", "BUILTIN", "DEFAULT", "UnknownDesign", "design_names", "get_design"]
