"""Initramfs, boot under QEMU, and parsing of the guest's result lines."""

from __future__ import annotations

import gzip
import io
import os
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from .setup import Env, SetupError, compile_c

__all__ = ["Boot", "GuestResult", "StepEvidence", "boot", "build_initramfs", "sanity_check", "DEVICES"]

DEVICES = ("zram", "virtio-blk")


# --------------------------------------------------------------------------- cpio


def _cpio_newc(entries: list[tuple[str, int, bytes]]) -> bytes:
    """entries: (name, mode, data); mode includes the file type bits."""
    buf = io.BytesIO()
    ino = 1
    for name, mode, data in entries + [("TRAILER!!!", 0, b"")]:
        nb = name.encode() + b"\0"
        hdr = "070701" + "".join(
            f"{x:08x}"
            for x in (ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(nb), 0)
        )
        ino += 1
        buf.write(hdr.encode())
        buf.write(nb)
        buf.write(b"\0" * ((4 - (110 + len(nb)) % 4) % 4))
        buf.write(data)
        buf.write(b"\0" * ((4 - len(data) % 4) % 4))
    return buf.getvalue()


def build_initramfs(env: Env, kernel: str, program: bytes, init_script: str, out: Path) -> None:
    d, f, l = 0o040755, 0o100755, 0o120777
    entries: list[tuple[str, int, bytes]] = []
    for name in ("bin", "dev", "proc", "sys", "tmp", "lib", "lib/oracle"):
        entries.append((name, d, b""))
    entries.append(("bin/busybox", f, env.busybox.read_bytes()))
    entries.append(("bin/sh", l, b"busybox"))
    mods = env.kernels[kernel].modules
    for m in mods:
        entries.append((f"lib/oracle/{m.name}", 0o100644, m.read_bytes()))
    script = init_script.replace("@MODULES@", " ".join(m.name for m in mods))
    entries.append(("init", f, script.encode()))
    entries.append(("test", f, program))
    data = _cpio_newc(entries)
    with gzip.open(out, "wb", compresslevel=1) as fh:
        fh.write(data)


INIT_HEAD = """#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
mount -t debugfs debugfs /sys/kernel/debug
mount -t cgroup2 cgroup2 /sys/fs/cgroup
echo +memory > /sys/fs/cgroup/cgroup.subtree_control
for m in @MODULES@; do insmod /lib/oracle/$m 2>/dev/null; done
T=/sys/kernel/mm/transparent_hugepage
echo never > $T/defrag
thp() { for d in $T/hugepages-*kB; do echo never > $d/enabled; done; for s in "$@"; do echo madvise > $T/hugepages-${s}kB/enabled; done; }
echo "@@BOOTED $(uname -r)"
"""
INIT_TAIL = """echo @@DONE
poweroff -f
"""


def _scenario_init(idx: int, device: str, disk: str | None, slots: int, rotational: bool, sizes: list[int]) -> str:
    lines = [f"thp {' '.join(str(s * 4) for s in sizes)}"]
    nbytes = (device_slots(slots) + 1) * 4096
    if device == "zram":
        dev = "/dev/zram0"
        lines += [
            "echo 1 > /sys/block/zram0/reset",
            f"echo {nbytes} > /sys/block/zram0/disksize",
        ]
    else:
        dev = f"/dev/{disk}"
        lines.append(f"echo {1 if rotational else 0} > /sys/block/{disk}/queue/rotational")
    lines += [
        f"mkswap {dev} >/dev/null 2>&1",
        f"swapon {dev} || echo '@@SWAPON-FAILED {idx}'",
        f"/test {idx} {dev}",
        f"swapoff {dev} 2>/dev/null",
    ]
    return "\n".join(lines) + "\n"


def device_slots(slots: int) -> int:
    """Slots of the real swap device for a scenario's `swap_slots`: exactly that, as in the
    model, so that the kernel's cluster allocation (which clusters are free, where order-0
    pages go, when a large folio falls back) works on the same area. Nothing but the
    scenario's folios takes slots: the test program's own memory is mlocked in every process
    and the cgroup reclaim holds every other folio (runtime.c, lock_program/hold_others)."""
    return slots


# --------------------------------------------------------------------------- results


@dataclass
class StepEvidence:
    step: int
    nviol: int = 0
    counters: dict[str, int] = field(default_factory=dict)
    pagemap: dict[str, str] = field(default_factory=dict)  # "before"/"after" -> text
    pfns: dict[str, dict[int, int]] = field(default_factory=dict)  # "before"/"after" -> page -> PFN (0: none)
    notes: list[str] = field(default_factory=list)
    # the step's VMA in its process after the step, in the --states letters: (pages, mte)
    state: tuple[str, str] | None = None


@dataclass
class GuestResult:
    index: int
    name: str
    rc: int | None = None  # 0 pass, 1 violations, 3 precondition not met, 4 skip, other: error
    violations: list[dict] = field(default_factory=list)
    steps: dict[int, StepEvidence] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def step(self, k: int) -> StepEvidence:
        if k not in self.steps:
            self.steps[k] = StepEvidence(k)
        return self.steps[k]


@dataclass
class Boot:
    kernel: str
    device: str
    release: str = ""
    seconds: float = 0.0
    results: dict[int, GuestResult] = field(default_factory=dict)
    console: str = ""
    error: str | None = None


def parse_console(text: str, boot: Boot) -> None:
    cur: GuestResult | None = None
    for raw in text.splitlines():
        line = raw.strip("\r")
        at = line.find("@@")
        if at < 0:
            continue
        line = line[at:]
        parts = line.split(" ")
        tag = parts[0]
        try:
            if tag == "@@BOOTED":
                boot.release = parts[1] if len(parts) > 1 else ""
            elif tag == "@@BEGIN":
                cur = GuestResult(int(parts[1]), parts[2])
                boot.results[cur.index] = cur
            elif cur is None:
                continue
            elif tag == "@@END":
                cur.rc = int(parts[2])
                cur = None
            elif tag == "@@V":
                k = int(parts[1])
                cur.violations.append(
                    {"step": k, "kind": parts[2], "proc": parts[3], "vma": parts[4],
                     "page": int(parts[5]), "detail": " ".join(parts[6:])}
                )
            elif tag == "@@C":
                ev = cur.step(int(parts[1]))
                for kv in parts[2:]:
                    if "=" in kv:
                        key, _, val = kv.partition("=")
                        ev.counters[key] = int(val)
            elif tag == "@@P":
                ev = cur.step(int(parts[1]))
                ev.pagemap[parts[2]] = " ".join(parts[3:])
            elif tag == "@@F":
                ev = cur.step(int(parts[1]))
                ev.pfns[parts[2]] = {int(p): int(f, 16) for p, _, f in (x.partition(":") for x in parts[3:])}
            elif tag == "@@Q":
                # "@@Q STEP PAGES MTE": MTE's spaces (not present) travel as '_'
                cur.step(int(parts[1])).state = (parts[2], parts[3].replace("_", " "))
            elif tag == "@@N":
                cur.step(int(parts[1])).notes.append(" ".join(parts[2:]))
            elif tag == "@@S":
                cur.step(int(parts[1])).nviol = int(parts[2])
            elif tag in ("@@SKIP", "@@FATAL", "@@SWAPON-FAILED"):
                cur.errors.append(line)
        except (IndexError, ValueError):
            if cur is not None:
                cur.errors.append(f"unparsable line: {line[:200]}")


# --------------------------------------------------------------------------- boot


def qemu_cmd(env: Env, kernel: str, initrd: Path, disks: list[Path], append: str = "") -> list[str]:
    cmd = env.qemu_base_cmd() + [
        "-machine", "virt,mte=on", "-cpu", "max,pauth=off", "-accel", "tcg", "-smp", "2",
        "-m", "1G", "-nographic", "-no-reboot", "-nic", "none", "-audio", "none",
        "-kernel", str(env.kernels[kernel].vmlinuz), "-initrd", str(initrd),
        "-append", f"console=ttyAMA0 panic=-1 loglevel=4 {append}".strip(),
    ]
    for disk in disks:
        cmd += ["-drive", f"file={disk},format=raw,if=virtio,cache=unsafe"]
    return cmd


def run_qemu(env: Env, cmd: list[str], timeout: float) -> tuple[str, float, str | None]:
    t0 = time.monotonic()
    qenv = dict(os.environ)
    qenv.update(env.qemu_env)
    try:
        proc = subprocess.run(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            timeout=timeout, env=qenv,
        )
        text = proc.stdout.decode("utf-8", "replace")
        err = None if proc.returncode == 0 else f"QEMU exited with status {proc.returncode}"
    except subprocess.TimeoutExpired as e:
        text = (e.stdout or b"").decode("utf-8", "replace")
        err = f"timeout after {timeout:.0f} s"
    return text, time.monotonic() - t0, err


def boot(env: Env, kernel: str, device: str, program: bytes, plan: list[tuple[int, int, bool, list[int]]],
         workdir: Path, timeout: float | None = None) -> Boot:
    """Boot once; plan: (scenario index, swap slots, rotational, folio sizes in pages)."""
    b = Boot(kernel, device)
    disks: list[Path] = []
    disk_of: dict[int, str] = {}
    body = INIT_HEAD
    for idx, slots, rot, sizes in plan:
        disk = None
        if device == "virtio-blk":
            if slots not in disk_of:
                name = "vd" + chr(ord("a") + len(disk_of))
                path = workdir / f"swap-{kernel}-{slots}.img"
                with open(path, "wb") as fh:
                    fh.truncate((device_slots(slots) + 1) * 4096)
                disks.append(path)
                disk_of[slots] = name
            disk = disk_of[slots]
        body += _scenario_init(idx, device, disk, slots, rot, sizes)
    body += INIT_TAIL
    initrd = workdir / f"initrd-{kernel}-{device}.gz"
    build_initramfs(env, kernel, program, body, initrd)
    if timeout is None:
        timeout = 120 + 20 * len(plan)
    text, secs, err = run_qemu(env, qemu_cmd(env, kernel, initrd, disks), timeout)
    b.seconds = secs
    b.console = text
    parse_console(text, b)
    if "@@DONE" not in text:
        b.error = err or "the guest did not finish (no @@DONE)"
    return b


SANITY_C = r"""
#define _GNU_SOURCE
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/prctl.h>
static sigjmp_buf jb;
static volatile int code;
static void h(int s, siginfo_t *si, void *u) { (void)s; (void)u; code = si->si_code; siglongjmp(jb, 1); }
int main(void)
{
	setvbuf(stdout, NULL, _IONBF, 0);
	if (!(getauxval(AT_HWCAP2) & (1UL << 18))) { printf("@@SANITY fail no-hwcap2-mte\n"); return 0; }
	if (prctl(55, 1UL | (1UL << 1) | (0xfffeUL << 3), 0, 0, 0)) { printf("@@SANITY fail prctl\n"); return 0; }
	uint8_t *p = mmap(0, 4096, PROT_READ | PROT_WRITE | 0x20, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) { printf("@@SANITY fail mmap\n"); return 0; }
	for (int i = 0; i < 4; i++) {
		uint64_t a = (uint64_t)(p + 16 * i) | ((uint64_t)(3 + i) << 56);
		asm volatile("stg %0, [%0]" : : "r"(a) : "memory");
	}
	int got[4];
	for (int i = 0; i < 4; i++) {
		uint64_t a = (uint64_t)(p + 16 * i);
		asm volatile("ldg %0, [%0]" : "+r"(a) : : "memory");
		got[i] = (a >> 56) & 0xf;
	}
	struct sigaction sa = { 0 };
	sa.sa_sigaction = h; sa.sa_flags = SA_SIGINFO;
	sigaction(SIGSEGV, &sa, 0);
	if (!sigsetjmp(jb, 1)) {
		volatile uint8_t *q = (uint8_t *)((uint64_t)(p + 16) | (9ULL << 56));
		(void)*q;
	}
	printf("@@SANITY %s tags=%d,%d,%d,%d fault_si_code=%d\n",
	       got[0] == 3 && got[1] == 4 && got[2] == 5 && got[3] == 6 && code == 9 ? "ok" : "fail",
	       got[0], got[1], got[2], got[3], code);
	return 0;
}
"""


def sanity_check(env: Env, kernel: str) -> tuple[bool, str]:
    with tempfile.TemporaryDirectory(prefix="mteswap-sanity-") as tmp:
        work = Path(tmp)
        exe = work / "sanity"
        compile_c(SANITY_C, exe)
        script = INIT_HEAD + "/test\n" + INIT_TAIL
        initrd = work / "initrd.gz"
        build_initramfs(env, kernel, exe.read_bytes(), script, initrd)
        text, secs, err = run_qemu(env, qemu_cmd(env, kernel, initrd, []), 180)
    for line in text.splitlines():
        at = line.find("@@SANITY")
        if at >= 0:
            res = line[at:].strip()
            return res.startswith("@@SANITY ok"), f"{res[len('@@SANITY '):]} (kernel {kernel}, boot {secs:.1f} s)"
    tail = "\n".join(text.strip().splitlines()[-15:])
    raise SetupError(f"sanity boot produced no result ({err or 'no output'}); console tail:\n{tail}")
