"""The program's side of the oracle: what each simulated process should observe if memory
never left RAM (scenario-format.md, "What the program expects"): per process and page, the
pointer tags it holds (packed like allocation tags, 0 for memory never tagged) and the value
it last wrote, and the write generation of the tags it set there (the ghost the model carries
with the tags, Machine.frame_tgen: the value its tag-setting `write` or `stg` is numbered by
for that page, scenario/runner.py `page_value`; 0 for tags it never set, which the kernel
zeroes)."""

from __future__ import annotations

from array import array
from itertools import compress

from mteswap.model import tags as T

_UNTOUCHED = (0, 0)   # what fresh anonymous memory holds: tag 0, value 0


class ProgramView:
    """One process's view, vpn -> (pointer tags, last value written), as three arrays indexed
    by vpn (8 + 8 + 1 bytes per page instead of a dict entry and two objects): `tags` (packed
    like allocation tags), `values`, and `present` (1 where the program wrote or tagged the page
    since it was last fresh; absent pages read as _UNTOUCHED), and `gens`, the write
    generation of the tags the program set (0 where it set none). Grows on demand."""

    __slots__ = ("tags", "values", "present", "gens")

    def __init__(self, other: "ProgramView | None" = None):
        self.tags: list[int] = list(other.tags) if other else []
        self.values = array("q", other.values) if other else array("q")
        self.present = bytearray(other.present) if other else bytearray()
        self.gens = array("q", other.gens) if other else array("q")

    def reserve(self, nvpn: int) -> None:
        grow = nvpn - len(self.present)
        if grow > 0:
            self.tags.extend([0] * grow)
            self.values.frombytes(bytes(8 * grow))
            self.present.extend(bytes(grow))
            self.gens.frombytes(bytes(8 * grow))

    def get(self, vpn: int, default=None):
        if vpn < len(self.present) and self.present[vpn]:
            return self.tags[vpn], self.values[vpn]
        return default

    def __getitem__(self, vpn: int) -> tuple[int, int]:
        got = self.get(vpn)
        if got is None:
            raise KeyError(vpn)
        return got

    def __setitem__(self, vpn: int, tv: tuple[int, int]) -> None:
        self.reserve(vpn + 1)
        self.tags[vpn], self.values[vpn] = tv
        self.present[vpn] = 1

    def pop(self, vpn: int, default=None):
        got = self.get(vpn, default)
        if vpn < len(self.present) and self.present[vpn]:
            self.present[vpn] = 0
            self.tags[vpn] = self.values[vpn] = self.gens[vpn] = 0
        return got

    def items(self) -> list[tuple[int, tuple[int, int]]]:
        """(vpn, (tags, value)) of the pages present, in vpn order."""
        return [(vpn, (self.tags[vpn], self.values[vpn]))
                for vpn in compress(range(len(self.present)), self.present)]

    def present_gens(self) -> tuple[int, ...]:
        """The tags' write generation of each page present, in vpn order (as `items`)."""
        return tuple(compress(self.gens, self.present))


class Expectation:
    """The program's view: pid -> ProgramView (vpn -> (pointer tags, last value written))."""

    def __init__(self):
        self.view: dict[int, ProgramView] = {}

    def new_process(self, pid: int, parent: int | None = None) -> None:
        self.view[pid] = ProgramView(self.view[parent] if parent is not None else None)

    def reserve(self, pid: int, nvpn: int) -> None:
        """Room for vpns below nvpn (the runner calls it at mmap)."""
        self.view[pid].reserve(nvpn)

    def get(self, pid: int, vpn: int) -> tuple[int, int]:
        return self.view[pid].get(vpn, _UNTOUCHED)

    # The setters index the arrays directly: vpn lies in a VMA, reserved at mmap (or fork).
    # A page they mark present keeps the other half of its view: an absent page holds 0, 0.
    def set_tags_span(self, pid: int, vpn: int, tags: list[int], done: list[bool],
                      gens: array) -> None:
        """The program now holds pointer tag tags[k] for page vpn + k, set by the write of
        generation gens[k], for every k where done[k] (the STG took effect)."""
        view = self.view[pid]
        n = len(tags)
        if done.count(True) == n:                    # every page tagged: one slice each
            view.tags[vpn:vpn + n] = T.uniform_each(tags)
            view.gens[vpn:vpn + n] = gens
            view.present[vpn:vpn + n] = b"\x01" * n
            return
        for k, (tag, did) in enumerate(zip(tags, done)):
            if did:
                view.tags[vpn + k] = T.uniform(tag)
                view.gens[vpn + k] = gens[k]
                view.present[vpn + k] = 1

    def set_values_span(self, pid: int, vpn: int, values) -> None:
        """The program last wrote values[k] to page vpn + k, for every k (`values` an
        array('q') or a list)."""
        view = self.view[pid]
        n = len(values)
        view.values[vpn:vpn + n] = values if isinstance(values, array) else array("q", values)
        view.present[vpn:vpn + n] = b"\x01" * n

    def forget(self, pid: int, vpn: int) -> None:
        """`dontneed`/`munmap`: fresh anonymous memory reads zero with tag 0."""
        self.view[pid].pop(vpn, None)

    def snapshot(self) -> tuple:
        """((pid, ((vpn, (tags, value)), ...), (tag generation per page present, ...)), ...)
        by pid."""
        return tuple((pid, tuple(v.items()), v.present_gens())
                     for pid, v in sorted(self.view.items()))
