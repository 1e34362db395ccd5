"""`mteswap cost --plot FILE.png` (mteswap.cost.plot): the PNG, its size, atomic writing."""

from __future__ import annotations

import dataclasses
import os
import struct
import subprocess
import sys

import pytest

from mteswap.cost import plot as cost_plot
from mteswap.cost.plot import figure_size_px, needs_log, panels_for, plot_costs
from mteswap.cost.run import COST_COUNTERS, run_design
from mteswap.cost.workloads import build
from mteswap.designs import BUILTIN

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
DESIGNS = ("split-before-swap", "rfc-v1", "merged")


@pytest.fixture(scope="module")
def workload():
    return build("sequential", pages=64)


@pytest.fixture(scope="module")
def results(workload):
    assert set(DESIGNS) <= set(BUILTIN)
    scenario = workload.scenario()
    return [run_design(scenario, name) for name in DESIGNS]


@pytest.fixture(scope="module")
def head(workload):
    return {"workload": workload.name, "seed": workload.seed, "params": workload.params,
            "check_state": False}


def png_size(path) -> tuple[int, int]:
    """Width and height from the PNG's IHDR chunk (the first one, right after the signature)."""
    with open(path, "rb") as f:
        data = f.read(24)
    assert data[:8] == PNG_SIGNATURE, f"{path} is not a PNG: starts {data[:8]!r}"
    length, kind = struct.unpack(">I4s", data[8:16])
    assert (length, kind) == (13, b"IHDR")
    return struct.unpack(">II", data[16:24])


def leftovers(directory) -> list[str]:
    return [n for n in os.listdir(directory) if n.endswith(".tmp")]


# -- the picture ------------------------------------------------------------------------------

def test_plot_writes_png_of_expected_size(results, head, tmp_path):
    out = tmp_path / "costs.png"
    plot_costs(results, head, str(out))
    # Four panels (tag work, faults/splits/allocation, I/O, storage) in a 2 x 2 grid of
    # 7 x 4 in panels, plus 0.8 in for title and legend, at 100 dpi.
    assert png_size(out) == (1400, 880) == figure_size_px(4)
    assert out.stat().st_size > 10_000
    assert leftovers(tmp_path) == []


def test_every_cost_counter_is_in_a_panel(results):
    plotted = [c for _, _, names in panels_for(COST_COUNTERS) for c in names]
    assert sorted(plotted) == sorted(COST_COUNTERS)
    assert [title for title, _, _ in panels_for(COST_COUNTERS)] == [
        "Tag work", "Faults, splits, slot allocation", "Swap I/O", "Tag storage (peak)"]


def test_selected_counters_one_panel(results, head, tmp_path):
    out = tmp_path / "tags.png"
    plot_costs(results, head, str(out), counters=("tag_saves", "tag_restores"))
    assert png_size(out) == (700, 480) == figure_size_px(1)


def test_compressed_bytes_join_the_storage_panel(results, head, tmp_path):
    extra = [dataclasses.replace(r, counters={**r.counters,
                                              "tag_bytes_peak_compressed": i * 1000})
             for i, r in enumerate(results)]
    panels = panels_for(extra[0].counters)
    assert panels[-1] == ("Tag storage (peak)", "bytes",
                          ["tag_bytes_peak", "tag_bytes_peak_compressed"])
    out = tmp_path / "compressed.png"
    plot_costs(extra, head, str(out))
    assert png_size(out) == (1400, 880)


def test_unknown_counter_goes_to_other_panel_and_missing_values_are_allowed(
        results, head, tmp_path):
    # A counter only one design has (and a huge value, so a log panel) still plots.
    odd = dataclasses.replace(results[0], design="odd",
                              counters={**results[0].counters, "new_counter": 3,
                                        "tag_saves": 5_000_000})
    assert panels_for(odd.counters)[-1] == ("Other counters", "count", ["new_counter"])
    out = tmp_path / "other.png"
    plot_costs([*results, odd], head, str(out))
    assert png_size(out) == figure_size_px(5) == (1400, 1280)


def test_all_builtin_designs(workload, head, tmp_path):
    scenario = workload.scenario()
    every = [run_design(scenario, name) for name in BUILTIN]
    out = tmp_path / "all.png"
    plot_costs(every, head, str(out))
    assert png_size(out) == (1400, 880)


def test_log_scale_only_beyond_three_decades():
    assert not needs_log([0, 4, 64])
    assert not needs_log([1, 1000])            # exactly three decades
    assert needs_log([1, 1001])
    assert needs_log([0, 4, 512, 8192, 5_000_000])
    assert not needs_log([0, 0, 5_000_000])    # one non-zero value spans nothing
    assert not needs_log([])


def test_value_labels():
    assert cost_plot._fmt(64.0, False) == "64"
    assert cost_plot._fmt(9999.0, False) == "9999"
    assert cost_plot._fmt(12345.0, False) == "12.3k"
    assert cost_plot._fmt(5_000_000.0, False) == "5M"
    assert cost_plot._fmt(8192.0, True) == "8 KiB"
    assert cost_plot._fmt(512.0, True) == "512 B"
    assert cost_plot._fmt(float("nan"), True) == "n/a"


def test_file_mode_follows_umask(results, head, tmp_path):
    old = os.umask(0o022)
    try:
        plot_costs(results, head, str(tmp_path / "mode.png"))
    finally:
        os.umask(old)
    assert (tmp_path / "mode.png").stat().st_mode & 0o777 == 0o644


def test_overwrites_existing_file(results, head, tmp_path):
    out = tmp_path / "costs.png"
    out.write_bytes(b"old")
    plot_costs(results, head, out)          # a PathLike works too
    assert png_size(out) == (1400, 880)
    assert leftovers(tmp_path) == []


# -- errors -----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["costs.jpg", "costs", "costs.png.txt", ".png"])
def test_non_png_path_is_value_error(results, head, tmp_path, name):
    with pytest.raises(ValueError, match=r"\.png"):
        plot_costs(results, head, str(tmp_path / name))
    assert os.listdir(tmp_path) == []


def test_uppercase_png_suffix_is_accepted(results, head, tmp_path):
    out = tmp_path / "COSTS.PNG"
    plot_costs(results, head, str(out), counters=("faults",))
    assert png_size(out) == (700, 480)


def _unwritable_dir(tmp_path):
    """A directory this process cannot create files in. As root (CI) permission bits do not
    stop us, so use a kernel filesystem that refuses new files even to root."""
    if os.geteuid() != 0:
        d = tmp_path / "ro"
        d.mkdir()
        d.chmod(0o555)
        return str(d)
    for d in ("/sys", "/proc"):
        probe = os.path.join(d, ".mteswap-probe.png")
        try:
            os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        except OSError:
            return d
        os.unlink(probe)
    pytest.skip("running as root with no unwritable directory to test against")


def test_unwritable_directory_raises_and_leaves_no_file(results, head, tmp_path):
    d = _unwritable_dir(tmp_path)
    before = set(os.listdir(d))
    target = os.path.join(d, "mteswap-cost-plot.png")
    try:
        with pytest.raises(OSError, match="cannot write plot"):
            plot_costs(results, head, target)
        assert not os.path.exists(target)
        assert set(os.listdir(d)) == before
    finally:
        if d.startswith(str(tmp_path)):
            os.chmod(d, 0o755)


def test_missing_directory_raises(results, head, tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        plot_costs(results, head, str(tmp_path / "nope" / "costs.png"))
    assert os.listdir(tmp_path) == []


def test_parent_is_a_file_raises(results, head, tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError, match="not a directory"):
        plot_costs(results, head, str(tmp_path / "file" / "costs.png"))


def test_path_is_a_directory_raises(results, head, tmp_path):
    (tmp_path / "dir.png").mkdir()
    with pytest.raises(IsADirectoryError, match="is a directory"):
        plot_costs(results, head, str(tmp_path / "dir.png"))
    assert os.listdir(tmp_path) == ["dir.png"]


def test_render_failure_leaves_no_partial_file(results, head, tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    def broken_savefig(self, fname, **kw):
        fname.write(PNG_SIGNATURE + b"partial")
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(Figure, "savefig", broken_savefig)
    fresh = tmp_path / "fresh.png"
    with pytest.raises(RuntimeError, match="disk on fire"):
        plot_costs(results, head, str(fresh))
    assert os.listdir(tmp_path) == []

    existing = tmp_path / "existing.png"
    existing.write_bytes(b"previous plot")
    with pytest.raises(RuntimeError):
        plot_costs(results, head, str(existing))
    assert existing.read_bytes() == b"previous plot"
    assert os.listdir(tmp_path) == ["existing.png"]


def test_bad_inputs_are_value_errors(results, head, tmp_path):
    out = str(tmp_path / "x.png")
    with pytest.raises(ValueError, match="no results"):
        plot_costs([], head, out)
    with pytest.raises(ValueError, match="lacks seed"):
        plot_costs(results, {"workload": "w", "params": {}}, out)
    with pytest.raises(ValueError, match="no_such_counter"):
        plot_costs(results, head, out, counters=("tag_saves", "no_such_counter"))
    with pytest.raises(ValueError, match="no counters"):
        plot_costs(results, head, out, counters=())
    bad = dataclasses.replace(results[0], counters={**results[0].counters, "faults": "many"})
    with pytest.raises(ValueError, match="not a number"):
        plot_costs([bad], head, out)
    assert os.listdir(tmp_path) == []


# -- import cost ------------------------------------------------------------------------------

@pytest.mark.parametrize("module", ["mteswap.cost.plot", "mteswap.cli"])
def test_importing_does_not_import_matplotlib(module):
    code = f"import sys, {module}; sys.exit('matplotlib' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_plot_does_not_touch_pyplot_or_the_backend(results, head, tmp_path):
    import matplotlib
    backend = matplotlib.get_backend()
    plot_costs(results, head, str(tmp_path / "p.png"))
    assert matplotlib.get_backend() == backend
    if "matplotlib.pyplot" in sys.modules:
        assert sys.modules["matplotlib.pyplot"].get_fignums() == []
