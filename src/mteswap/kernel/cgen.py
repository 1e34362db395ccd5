"""Scenario -> C program for the real-kernel oracle.

`batch_program(scenarios)` is the guest program of one batch (`/test IDX SWAPDEV` runs
scenario IDX and prints `@@` result lines); `export_program(scenario)` is a standalone C file in
the style of the kernel's selftests (TAP output). Both share `runtime.c`.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

from mteswap.ranges import format_ranges
from mteswap.scenario.load import ALL, Scenario

__all__ = ["Unsupported", "check_supported", "expand", "batch_program", "export_program", "OPS"]

OPS = {
    "mmap": 1, "munmap": 2, "mprotect": 3, "write": 4, "stg": 5, "read": 6, "fork": 7,
    "exit": 8, "pageout": 9, "reclaim": 10, "evict": 11, "dontneed": 12, "split": 13,
    "swapoff": 14, "drop_caches": 15,
}
GLOBAL_OPS = ("evict", "swapoff", "drop_caches")
MAXP = 16
MAXV = 32


class Unsupported(Exception):
    """The scenario uses something the real-kernel oracle cannot reproduce."""


@dataclass
class CStep:
    index: int
    op: str
    proc: int
    child: int
    vma: int
    npages_map: int
    mte: int
    tagmode: int
    tag: int
    keep: int
    pages: list[int]
    desc: str


@dataclass
class CScenario:
    scenario: Scenario
    procs: list[str]
    vmas: list[str]
    steps: list[CStep]
    align_pages: int


def check_supported(sc: Scenario) -> None:
    c = sc.config
    if getattr(c, "tag_alloc_fail_after", None) is not None:
        raise Unsupported(
            f"{sc.file}: config tag_alloc_fail_after is not supported on a real kernel "
            "(no way to make mte_allocate_tag_storage fail on a stock kernel)"
        )
    if 2 in c.folio_pages:
        raise Unsupported(f"{sc.file}: config folio_pages 2 (8 KiB): Linux has no order-1 anonymous mTHP")
    if not c.map_whole_folio:
        raise Unsupported(f"{sc.file}: config map_whole_folio false: the kernel (>= 6.11) always maps a whole swap-cache folio")
    if not c.large_swapin:
        raise Unsupported(f"{sc.file}: config large_swapin false: 6.12 and later always swap in large folios on zram")


def _desc(step) -> str:
    parts = []
    for k, v in step.args.items():
        if isinstance(v, (tuple, range)):
            v = _pages_text(v)
        parts.append(f"{k}={v}")
    return f"{step.op} " + " ".join(parts) if parts else step.op


def _pages_text(pages: tuple) -> str:
    return format_ranges(pages) or "[]"


def expand(sc: Scenario) -> CScenario:
    """Resolve names to indices and `all` to explicit page lists (tracking munmap/fork/exit)."""
    check_supported(sc)
    procs = ["A"]
    vmas: list[str] = []
    mapped: dict[tuple[str, str], set[int]] = {}
    alive = {"A"}
    steps: list[CStep] = []
    for st in sc.steps:
        a = st.args
        op = st.op
        if op not in OPS:
            raise Unsupported(f"{sc.file}: step {st.index}: op {op!r} is not supported by the kernel oracle")
        pname = a.get("proc")
        vname = a.get("vma")
        if pname is not None and pname not in procs:
            procs.append(pname)
        if vname is not None and vname not in vmas:
            vmas.append(vname)
        child = -1
        if op == "fork":
            if a["child"] not in procs:
                procs.append(a["child"])
            child = procs.index(a["child"])
        pages: list[int] = []
        if op == "mmap":
            mapped[(pname, vname)] = set(range(a["pages"]))
        elif vname is not None:
            spec = a.get("pages", ALL)
            have = mapped.get((pname, vname), set())
            pages = sorted(have) if spec == ALL else list(spec)
        if op == "munmap":
            mapped[(pname, vname)] -= set(pages)
        if op == "fork":
            for (p, v), s in list(mapped.items()):
                if p == pname:
                    mapped[(a["child"], v)] = set(s)
            alive.add(a["child"])
        if op == "exit":
            for key in [k for k in mapped if k[0] == pname]:
                mapped[key] = set()
        tag = a.get("tag")
        tagmode = 0 if tag is None else (2 if tag == "distinct" else 1)
        steps.append(
            CStep(
                index=st.index,
                op=op,
                proc=procs.index(pname) if pname is not None else -1,
                child=child,
                vma=vmas.index(vname) if vname is not None else -1,
                npages_map=a["pages"] if op == "mmap" else 0,
                mte=int(bool(a.get("mte", False))),
                tagmode=tagmode,
                tag=tag if isinstance(tag, int) else 0,
                keep=int(bool(a.get("keep_cached", False))),
                pages=pages,
                desc=_desc(st),
            )
        )
    if len(procs) > MAXP:
        raise Unsupported(f"{sc.file}: more than {MAXP} processes")
    if len(vmas) > MAXV:
        raise Unsupported(f"{sc.file}: more than {MAXV} VMAs")
    return CScenario(sc, procs, vmas, steps, max(sc.config.folio_pages))


# --------------------------------------------------------------------------- C text

_TYPES = """\
enum { %s };
typedef struct {
	int op, proc, child, vma, npages_map, mte, tagmode, tag, keep, n;
	const unsigned short *pg;
	const char *desc;
} step_t;
typedef struct {
	const char *name;
	int nprocs, nvmas;
	const char *const *procnames;
	const char *const *vmanames;
	int nsteps;
	const step_t *steps;
	int align_pages;
} scen_t;
"""

_BATCH_DEFS = """\
#define OUT_PREFIX_VIOL "@@V"
#define OUT_PREFIX_CNT "@@C"
#define OUT_PREFIX_PM "@@P"
#define OUT_PREFIX_PFN "@@F"
#define OUT_PREFIX_NOTE "@@N"
#define OUT_PREFIX_STATE "@@Q"
#define OUT_PREFIX_SKIP "@@SKIP"
#define OUT_PREFIX_FATAL "@@FATAL"
#define TAP_PLAN(n) do { } while (0)
#define TAP_STEP(k, desc, nviol, note) out("@@S %d %d\\n", (k), (nviol))
"""

_TAP_DEFS = """\
#define OUT_PREFIX_VIOL "# violation: step"
#define OUT_PREFIX_CNT "# counters: step"
#define OUT_PREFIX_PM "# pagemap: step"
#define OUT_PREFIX_PFN "# pfns: step"
#define OUT_PREFIX_NOTE "# note: step"
#define OUT_PREFIX_STATE "# state: step"
#define OUT_PREFIX_SKIP "1..0 # SKIP"
#define OUT_PREFIX_FATAL "Bail out!"
static int tap_n;
#define TAP_PLAN(n) out("TAP version 13\\n1..%d\\n", (n))
#define TAP_STEP(k, desc, nviol, note) \\
	out("%sok %d - step %d: %s%s%s\\n", (nviol) ? "not " : "", ++tap_n, (k), (desc), \\
	    (note)[0] ? " # " : "", (note))
"""


def _c_string(s: str) -> str:
    out = ['"']
    for ch in s:
        if ch in '\\"':
            out.append("\\" + ch)
        elif 32 <= ord(ch) < 127:
            out.append(ch)
        else:
            out.append("?")
    out.append('"')
    return "".join(out)


def _scenario_c(cs: CScenario, n: int) -> str:
    lines = []
    p = f"s{n}"
    for st in cs.steps:
        if st.pages:
            lines.append(
                f"static const unsigned short {p}_pg{st.index}[] = {{{', '.join(map(str, st.pages))}}};"
            )
    lines.append(f"static const step_t {p}_steps[] = {{")
    for st in cs.steps:
        pg = f"{p}_pg{st.index}" if st.pages else "NULL"
        lines.append(
            f"\t{{ OP_{st.op.upper()}, {st.proc}, {st.child}, {st.vma}, {st.npages_map}, {st.mte}, "
            f"{st.tagmode}, {st.tag}, {st.keep}, {len(st.pages)}, {pg}, "
            f"{_c_string(st.desc)} }},"
        )
    lines.append("};")
    lines.append(f"static const char *const {p}_procs[] = {{{', '.join(_c_string(x) for x in cs.procs)}}};")
    vm = ", ".join(_c_string(x) for x in cs.vmas) or '""'
    lines.append(f"static const char *const {p}_vmas[] = {{{vm}}};")
    lines.append(
        f"static const scen_t {p} = {{ {_c_string(cs.scenario.name)}, {len(cs.procs)}, {len(cs.vmas)}, "
        f"{p}_procs, {p}_vmas, {len(cs.steps)}, {p}_steps, {cs.align_pages} }};"
    )
    return "\n".join(lines) + "\n"


def _runtime() -> str:
    return resources.files("mteswap.kernel").joinpath("runtime.c").read_text()


def _prologue(defs: str) -> str:
    enum = ", ".join(f"OP_{k.upper()} = {v}" for k, v in OPS.items())
    return defs + "\n" + _TYPES % enum


def batch_program(expanded: list[CScenario]) -> str:
    parts = [
        "/* generated by mteswap kernel: guest batch program */\n#define _GNU_SOURCE\n",
        _prologue(_BATCH_DEFS),
        _runtime(),
    ]
    for i, cs in enumerate(expanded):
        parts.append(_scenario_c(cs, i))
    table = ", ".join(f"&s{i}" for i in range(len(expanded)))
    parts.append(
        f"""
static const scen_t *const all_scenarios[] = {{ {table} }};

int main(int argc, char **argv)
{{
	setvbuf(stdout, NULL, _IONBF, 0);
	if (argc < 2) {{
		out("usage: %s IDX [SWAPDEV]\\n", argv[0]);
		return 2;
	}}
	int idx = atoi(argv[1]);
	if (idx < 0 || idx >= {len(expanded)})
		return 2;
	swapdev = argc > 2 ? argv[2] : NULL;
	out("@@BEGIN %d %s\\n", idx, all_scenarios[idx]->name);
	int rc = run_scenario(all_scenarios[idx], idx);
	out("@@END %d %d\\n", idx, rc);
	return 0;
}}
"""
    )
    return "".join(parts)


def export_program(cs: CScenario) -> str:
    sc = cs.scenario
    header = (
        "// SPDX-License-Identifier: GPL-2.0\n"
        f"/*\n * MTE tags across swap: scenario {sc.name}, generated by `mteswap kernel export`.\n"
        " *\n"
        + "".join(f" * {line}\n" for line in (sc.description or "").strip().splitlines())
        + " *\n * Build: aarch64-linux-gnu-gcc -static -O2 -march=armv8.5-a+memtag -o test test.c\n"
        " * Run as root on an arm64 system with MTE, with swap enabled, debugfs mounted (for\n"
        " * split steps) and cgroup v2 at /sys/fs/cgroup (reclaim steps use memory.reclaim of a\n"
        " * cgroup holding only this test).  Output is TAP; every step is one test point.\n"
        " */\n"
        "#define _GNU_SOURCE\n"
    )
    return (
        header
        + _prologue(_TAP_DEFS)
        + _runtime()
        + _scenario_c(cs, 0)
        + """
static int swap_enabled(void)
{
	char b[4096];
	int fd = open("/proc/swaps", O_RDONLY);
	if (fd < 0)
		return 0;
	ssize_t r = read(fd, b, sizeof b - 1);
	close(fd);
	if (r <= 0)
		return 0;
	b[r] = 0;
	char *nl = strchr(b, '\\n');
	if (!nl || !nl[1])
		return 0;
	/* first device name, for swapoff steps */
	static char dev[256];
	sscanf(nl + 1, "%255s", dev);
	swapdev = dev;
	return 1;
}

int main(void)
{
	setvbuf(stdout, NULL, _IONBF, 0);
	if (!mte_available()) {
		out("1..0 # SKIP MTE not supported\\n");
		return 0;
	}
	if (!swap_enabled()) {
		out("1..0 # SKIP no swap enabled\\n");
		return 0;
	}
	int rc = run_scenario(&s0, 0);
	if (rc == 4)
		return 0;
	return rc == 0 ? 0 : 1;
}
"""
    )
