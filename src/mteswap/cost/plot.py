"""`mteswap cost --plot FILE.png`: the cost counters of several designs as a PNG.

One panel per counter group (tag work, faults and allocation, swap I/O, tag storage), with
grouped bars, one colour per design, and every bar labelled with its value. A panel goes to a
symmetric log scale only when its non-zero values span more than three decades.

matplotlib is imported inside `plot_costs`, never at module level, so importing this module
(and so the rest of the CLI) stays cheap; its import costs about half a second. Rendering uses
the Agg canvas directly (`Figure` + `FigureCanvasAgg`, no pyplot): no display is needed, no
global backend is switched, and no figure is left registered with pyplot.

The file is written atomically: the PNG is rendered into a temporary file in the target's
directory and moved over the target with `os.replace`, so a failure leaves no partial file
(and an existing file at the target untouched).
"""

from __future__ import annotations

import math
import os
import secrets

from mteswap.cost.run import CostResult

# Counter groups, one panel each, in display order: (title, y-axis label, counters).
# A counter in no group (a new one) goes to a last "other counters" panel.
GROUPS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("Tag work", "pages / calls",
     ("tag_saves", "tag_restores", "restore_calls", "restore_page_iterations")),
    ("Faults, splits, slot allocation", "count",
     ("faults", "splits", "swap_slot_allocs", "swap_slot_alloc_fails", "swpout_fallback",
      "swap_cache_hits")),
    ("Swap I/O", "folios (swap_*) / pages (pswp*)",
     ("swap_outs", "swap_ins", "large_swap_outs", "pswpout", "pswpin")),
    ("Tag storage (peak)", "bytes",
     ("tag_bytes_peak", "tag_bytes_peak_compressed")),
)
OTHER = ("Other counters", "count")
BYTE_COUNTERS = frozenset({"tag_bytes_peak", "tag_bytes_peak_compressed"})

# Figure geometry. savefig never uses bbox_inches="tight", so the PNG is exactly
# COLUMNS x rows panels of PANEL_IN inches plus TITLE_IN for the title and legend, at DPI.
PANEL_IN = (7.0, 4.0)
TITLE_IN = 0.8
COLUMNS = 2
DPI = 100
LOG_SPAN = 1e3          # symlog when max/min of a panel's non-zero values exceeds this


def figure_size_px(panels: int) -> tuple[int, int]:
    """Width and height in pixels of the PNG for `panels` panels."""
    cols = min(COLUMNS, panels)
    rows = -(-panels // cols)
    return (round(cols * PANEL_IN[0] * DPI), round((rows * PANEL_IN[1] + TITLE_IN) * DPI))


def panels_for(counters) -> list[tuple[str, str, list[str]]]:
    """The (title, y label, counters) panels for these counter names, empty groups dropped."""
    wanted = list(dict.fromkeys(counters))
    grouped = {c for _, _, names in GROUPS for c in names}
    panels = [(title, ylabel, [c for c in names if c in wanted])
              for title, ylabel, names in GROUPS]
    other = [c for c in wanted if c not in grouped]
    panels.append((*OTHER, other))
    return [p for p in panels if p[2]]


def needs_log(values) -> bool:
    """Whether a panel with these values gets a log scale: its non-zero values span more
    than three decades (zeros stay at zero on the symmetric log scale used)."""
    positive = [v for v in values if v > 0]
    return len(positive) >= 2 and max(positive) / min(positive) > LOG_SPAN


def _fmt(value: float, as_bytes: bool) -> str:
    if isinstance(value, float) and math.isnan(value):
        return "n/a"
    if as_bytes:
        for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
            if abs(value) >= size:
                return f"{value / size:.3g} {unit}"
        return f"{value:g} B"
    for unit, size, from_ in (("G", 1e9, 1e9), ("M", 1e6, 1e6), ("k", 1e3, 1e4)):
        if abs(value) >= from_:         # below 10,000 the plain number is short enough
            return f"{value / size:.3g}{unit}"
    return f"{value:g}"


def _check_path(path) -> tuple[str, str]:
    """(absolute path, its directory), or ValueError/OSError saying what is wrong."""
    if not isinstance(path, (str, os.PathLike)):
        raise ValueError(f"plot path must be a file name, not {type(path).__name__}")
    path = os.fspath(path)
    if not path.lower().endswith(".png") or os.path.basename(path).lower() == ".png":
        raise ValueError(f"plot path {path!r} must name a .png file (e.g. costs.png)")
    full = os.path.abspath(path)
    directory = os.path.dirname(full)
    if not os.path.isdir(directory):
        code = 2 if not os.path.exists(directory) else 20   # ENOENT / ENOTDIR
        raise OSError(code, f"cannot write plot {path!r}: directory {directory!r} "
                            f"{'does not exist' if code == 2 else 'is not a directory'}")
    if os.path.isdir(full):
        raise OSError(21, f"cannot write plot {path!r}: it is a directory")   # EISDIR
    return full, directory


def _values(results: list[CostResult], counters) -> dict[str, list[float]]:
    """counter -> one value per result (NaN where a result lacks the counter)."""
    table = {}
    for name in counters:
        row = []
        for r in results:
            v = r.counters.get(name, math.nan)
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise ValueError(f"counter {name!r} of design {r.design!r} is not a number: {v!r}")
            row.append(float(v))
        table[name] = row
    return table


def _open_temp(directory: str, base: str) -> tuple[int, str]:
    """A new file in `directory` for the PNG (mode 0o666 less the umask, like open())."""
    for _ in range(100):
        tmp = os.path.join(directory, f".{base}.{secrets.token_hex(4)}.tmp")
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), tmp
        except FileExistsError:
            continue
        except OSError as err:
            raise OSError(err.errno, f"cannot write plot in {directory!r}: {err.strerror}") \
                from err
    raise OSError(17, f"cannot create a temporary file in {directory!r}")   # EEXIST


def plot_costs(results: list[CostResult], head: dict, path: str,
               counters: tuple[str, ...] | None = None) -> None:
    """Write a PNG of `results` (one `CostResult` per design) to `path`.

    `head` names the run, as `mteswap cost` builds it: keys workload, seed and params (and
    optionally check_state). `counters` picks which counters to plot (default: every counter
    the results have, e.g. COST_COUNTERS, plus tag_bytes_peak_compressed if present).

    Raises ValueError for a path not ending in .png, no results, a missing head key, or a
    counter no result has; OSError when the file cannot be written. On any failure no file
    is left at `path` (an existing one is left as it was) and no temporary file remains.
    """
    full, directory = _check_path(path)
    if not results:
        raise ValueError("nothing to plot: no results")
    missing = [k for k in ("workload", "seed", "params") if k not in head]
    if missing:
        raise ValueError(f"plot head lacks {', '.join(missing)}")
    present = list(dict.fromkeys(c for r in results for c in r.counters))
    if counters is None:
        counters = tuple(present)
    else:
        counters = tuple(counters)
        unknown = [c for c in counters if c not in present]
        if unknown:
            raise ValueError(f"no result has counter(s) {', '.join(unknown)}; "
                             f"known: {', '.join(present)}")
    if not counters:
        raise ValueError("nothing to plot: no counters")
    values = _values(results, counters)
    panels = panels_for(counters)

    fd, tmp = _open_temp(directory, os.path.basename(full))
    try:
        with os.fdopen(fd, "wb") as out:
            _render(results, head, panels, values, out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, full)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _title(head: dict) -> str:
    params = head["params"]
    if isinstance(params, dict):
        params = ", ".join(f"{k}={v}" for k, v in params.items())
    title = f"mteswap cost: workload {head['workload']}, seed {head['seed']}"
    title += f" ({params})" if params else ""
    if head.get("check_state") is False:
        title += ", state check off"
    return title


def _render(results, head, panels, values, out) -> None:
    import matplotlib
    import matplotlib.style
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    n = len(panels)
    cols = min(COLUMNS, n)
    rows = -(-n // cols)
    width_px, height_px = figure_size_px(n)
    # The default style, whatever the user's matplotlibrc says (savefig.bbox, dpi, ...).
    with matplotlib.style.context("default"), matplotlib.rc_context({"savefig.bbox": None}):
        fig = Figure(figsize=(width_px / DPI, height_px / DPI), dpi=DPI, layout="constrained")
        FigureCanvasAgg(fig)
        axes = fig.subplots(rows, cols, squeeze=False).ravel()
        cmap = matplotlib.colormaps["tab10" if len(results) <= 10 else "tab20"]
        colours = [cmap(i % cmap.N) for i in range(len(results))]
        hatches = ["//" if r.violations else None for r in results]
        many = len(results) * max(len(p[2]) for p in panels) > 16
        for ax, (ptitle, ylabel, names) in zip(axes, panels):
            _panel(ax, ptitle, ylabel, names, values, results, colours, hatches, many)
        for ax in axes[n:]:
            ax.set_visible(False)
        handles = [Patch(facecolor=c, hatch=h, edgecolor="black" if h else c,
                         label=r.design + (f" ({r.violations} violations)"
                                           if r.violations else ""))
                   for r, c, h in zip(results, colours, hatches)]
        fig.legend(handles=handles, loc="outside lower center",
                   ncols=min(len(results), 5), fontsize=8, frameon=False)
        fig.suptitle(_title(head), fontsize=11)
        fig.savefig(out, format="png", dpi=DPI, bbox_inches=None,
                    metadata={"Software": None})


def _panel(ax, title, ylabel, names, values, results, colours, hatches, many) -> None:
    k = len(results)
    width = 0.8 / k
    as_bytes = all(name in BYTE_COUNTERS for name in names)
    for i, (r, colour, hatch) in enumerate(zip(results, colours, hatches)):
        xs = [j + (i - (k - 1) / 2) * width for j in range(len(names))]
        heights = [values[name][i] for name in names]
        bars = ax.bar(xs, [0.0 if math.isnan(h) else h for h in heights], width,
                      color=colour, hatch=hatch, edgecolor="black" if hatch else colour,
                      linewidth=0.5)
        ax.bar_label(bars, labels=[_fmt(h, as_bytes) for h in heights], padding=2,
                     fontsize=6 if many else 7, rotation=90 if many else 0)
    finite = [v for name in names for v in values[name] if not math.isnan(v)]
    top = max(finite, default=0.0)
    if needs_log(finite):
        ax.set_yscale("symlog", linthresh=1)
        ax.set_ylim(0, max(top, 1) * 30)          # room for the labels above the bars
        ylabel += " (log)"
    else:
        ax.set_ylim(0, top * (1.45 if many else 1.2) if top > 0 else 1)
    pad = max(0.0, (3 - len(names)) / 2)    # a lone counter's bars stay bar-sized
    ax.set_xlim(-0.5 - pad, len(names) - 0.5 + pad)
    ax.set_title(title, fontsize=10)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.set_xticks(range(len(names)), names, fontsize=7, rotation=15, ha="right",
                  rotation_mode="anchor")
    ax.tick_params(axis="y", labelsize=7)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
