"""Fetch, unpack and check the pinned pieces the real-kernel oracle needs.

Everything comes from Debian's archive through a *private* apt state (its own sources list,
lists, cache and empty dpkg status under the cache folder), so the machine's apt set-up is
never touched; the archive's base URL is read from the machine's own apt sources at run time.
Versions are pinned; downloaded `.deb`s are kept in the cache, so a pinned version that later
leaves the archive still works from the cache, and a missing one fails with a message naming
the package.  QEMU is never installed system-wide: it is unpacked with `dpkg -x` together with
the few shared libraries it needs that a plain Debian 12 lacks.  Only the cross compiler
(`gcc-aarch64-linux-gnu`) is installed with `apt-get install`, and only when it is missing.
"""

from __future__ import annotations

import json
import lzma
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

__all__ = [
    "KERNELS",
    "Env",
    "KernelFiles",
    "SetupError",
    "archive_base",
    "default_cache",
    "ensure",
    "load_env",
]


class SetupError(Exception):
    """The set-up cannot be made or is missing; the message says what to do."""


QEMU_VERSION = "1:10.0.2+ds-2+deb13u1~bpo12+1"

# (package, architecture, pinned version)
QEMU_PACKAGES = [
    ("qemu-system-arm", "amd64", QEMU_VERSION),
    ("qemu-system-common", "amd64", QEMU_VERSION),
    ("qemu-system-data", "all", QEMU_VERSION),
    ("qemu-system-gui", "amd64", QEMU_VERSION),
    ("qemu-system-modules-opengl", "amd64", QEMU_VERSION),
]
# Shared libraries QEMU 10 links against that a plain Debian 12 does not have installed
# (bookworm, amd64); unpacked beside QEMU and found through LD_LIBRARY_PATH.
QEMU_LIBS = [
    ("libcapstone4", "amd64", "4.0.2-5"),
    ("libpmem1", "amd64", "1.12.1-2"),
    ("libndctl6", "amd64", "76.1-1"),
    ("libdaxctl1", "amd64", "76.1-1"),
    ("libfdt1", "amd64", "1.6.1-4+b1"),
    ("librdmacm1", "amd64", "44.0-2"),
    ("libibverbs1", "amd64", "44.0-2"),
    ("libnl-3-200", "amd64", "3.7.0-0.2+b1"),
    ("libnl-route-3-200", "amd64", "3.7.0-0.2+b1"),
    ("libslirp0", "amd64", "4.7.0-1"),
    ("libvdeplug2", "amd64", "4.0.1-4"),
    ("libfuse3-3", "amd64", "3.14.0-4"),
    ("libaio1", "amd64", "0.3.113-4"),
    ("liburing2", "amd64", "2.3-3"),
]
BUSYBOX = [("busybox-static", "arm64", "1:1.38.0-3+b1")]


@dataclass(frozen=True)
class KernelPin:
    name: str  # "6.12" or "7.2"
    release: str  # uname -r
    packages: list[tuple[str, str, str]]


KERNELS: dict[str, KernelPin] = {
    "6.12": KernelPin(
        "6.12",
        "6.12.117+deb13-arm64",
        [("linux-image-6.12.117+deb13-arm64-unsigned", "arm64", "6.12.117-1")],
    ),
    "7.2": KernelPin(
        "7.2",
        "7.2.13+deb14-arm64",
        [
            ("linux-binary-7.2.13+deb14-arm64", "arm64", "7.2.13-1"),
            ("linux-modules-7.2.13+deb14-arm64", "arm64", "7.2.13-1"),
            ("linux-base-7.2.13+deb14-arm64", "arm64", "7.2.13-1"),
        ],
    ),
}
# Modules the guest loads (dependencies are resolved from each module's .modinfo).
GUEST_MODULES = ["zram", "virtio_blk", "lz4_compress", "lz4hc_compress"]

SUITES = [
    ("amd64", "bookworm-backports"),
    ("amd64", "bookworm"),
    ("arm64", "trixie"),
    ("arm64", "sid"),
]

CROSS_GCC = "aarch64-linux-gnu-gcc"
CFLAGS = ["-static", "-O2", "-march=armv8.5-a+memtag"]


def default_cache() -> Path:
    env = os.environ.get("MTESWAP_KERNEL_CACHE")
    if env:
        return Path(env)
    return Path(os.path.expanduser("~/.cache/mteswap/kernel"))


# --------------------------------------------------------------------------- apt


def archive_base(etc: Path = Path("/etc/apt")) -> str:
    """The Debian archive's base URL, from the machine's own apt sources."""
    candidates: list[str] = []
    files = sorted((etc / "sources.list.d").glob("*.sources")) if (etc / "sources.list.d").is_dir() else []
    for path in files:
        try:
            text = path.read_text()
        except OSError:
            continue
        for stanza in re.split(r"\n\s*\n", text):
            fields = {}
            for line in stanza.splitlines():
                if line.startswith("#") or ":" not in line:
                    continue
                key, _, value = line.partition(":")
                fields[key.strip().lower()] = value.strip()
            if "deb" not in fields.get("types", "").split():
                continue
            if fields.get("enabled", "yes").lower() == "no":
                continue
            suites = fields.get("suites", "").split()
            if any(s.endswith("-security") for s in suites):
                continue
            candidates.extend(fields.get("uris", "").split())
    lists = [etc / "sources.list"]
    if (etc / "sources.list.d").is_dir():
        lists += sorted((etc / "sources.list.d").glob("*.list"))
    for path in lists:
        try:
            text = path.read_text()
        except OSError:
            continue
        for line in text.splitlines():
            parts = re.sub(r"\[[^\]]*\]", " ", line).split()
            if len(parts) >= 3 and parts[0] == "deb" and not parts[2].endswith("-security"):
                candidates.append(parts[1])
    for uri in candidates:
        if uri.rstrip("/").endswith("/debian"):
            return uri.rstrip("/")
    if candidates:
        return candidates[0].rstrip("/")
    raise SetupError(
        "no Debian archive found in the machine's apt sources (/etc/apt/sources.list.d/*.sources, "
        "/etc/apt/sources.list): cannot fetch the kernel-oracle packages"
    )


class _PrivateApt:
    def __init__(self, root: Path, log: Callable[[str], None]) -> None:
        self.root = root
        self.log = log
        self.updated = False

    def options(self) -> list[str]:
        r = self.root
        return [
            f"-oDir::State::Lists={r}/lists",
            f"-oDir::Etc::SourceList={r}/sources.list",
            f"-oDir::Etc::SourceParts={r}/sources.list.d",
            f"-oDir::Etc::Preferences={r}/preferences",
            f"-oDir::Etc::PreferencesParts={r}/preferences.d",
            f"-oDir::Cache={r}/cache",
            f"-oDir::State::status={r}/status",
            "-oAPT::Architecture=amd64",
            "-oAPT::Architectures::=amd64",
            "-oAPT::Architectures::=arm64",
            "-oAPT::Sandbox::User=root",
            "-oAcquire::Retries=3",
            "-qq",
        ]

    def update(self) -> None:
        if self.updated:
            return
        r = self.root
        for sub in ("lists/partial", "cache/archives/partial", "sources.list.d", "preferences.d"):
            (r / sub).mkdir(parents=True, exist_ok=True)
        (r / "status").touch()
        base = archive_base()
        lines = [f"deb [arch={arch}] {base} {suite} main" for arch, suite in SUITES]
        (r / "sources.list").write_text("\n".join(lines) + "\n")
        self.log("apt: updating the private package lists")
        proc = subprocess.run(
            ["apt-get", *self.options(), "update"], capture_output=True, text=True
        )
        if proc.returncode != 0:
            raise SetupError(f"apt-get update (private state) failed: {proc.stderr.strip()[-400:]}")
        self.updated = True

    def download(self, pkgs: list[tuple[str, str, str]], dest: Path) -> None:
        self.update()
        specs = []
        for name, arch, version in pkgs:
            spec = name if arch in ("all", "amd64") else f"{name}:{arch}"
            specs.append(f"{spec}={version}")
        # Check each first so that the error names the package that is gone.
        for (name, arch, version), spec in zip(pkgs, specs):
            proc = subprocess.run(
                ["apt-cache", *self.options(), "show", spec], capture_output=True, text=True
            )
            if proc.returncode != 0 or not proc.stdout.strip():
                raise SetupError(
                    f"the Debian archive no longer has {name} ({arch}) version {version}, "
                    f"which the kernel oracle pins; update the pin in "
                    f"src/mteswap/kernel/setup.py or restore a cached {deb_name(name, arch, version)}"
                )
        dest.mkdir(parents=True, exist_ok=True)
        proc = subprocess.run(
            ["apt-get", *self.options(), "download", *specs],
            capture_output=True,
            text=True,
            cwd=dest,
        )
        if proc.returncode != 0:
            raise SetupError(f"apt-get download {' '.join(specs)} failed: {proc.stderr.strip()[-400:]}")


def deb_name(name: str, arch: str, version: str) -> str:
    return f"{name}_{version.replace(':', '%3a')}_{arch}.deb"


# --------------------------------------------------------------------------- layout


@dataclass
class KernelFiles:
    name: str
    release: str
    vmlinuz: Path
    modules: list[Path]  # decompressed, in load order


@dataclass
class Env:
    cache: Path
    qemu: Path
    qemu_share: Path
    qemu_env: dict[str, str]
    busybox: Path
    kernels: dict[str, KernelFiles] = field(default_factory=dict)

    def qemu_base_cmd(self) -> list[str]:
        return [str(self.qemu), "-L", str(self.qemu_share)]


def _stamp_ok(stamp: Path, pins: list) -> bool:
    try:
        return json.loads(stamp.read_text()) == json.loads(json.dumps(pins))
    except (OSError, ValueError):
        return False


def _unpack(pkgs: list[tuple[str, str, str]], debs: Path, dest: Path, apt: _PrivateApt) -> None:
    missing = [p for p in pkgs if not (debs / deb_name(*p)).is_file()]
    if missing:
        apt.download(missing, debs)
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for p in pkgs:
        deb = debs / deb_name(*p)
        if not deb.is_file():
            raise SetupError(f"download of {p[0]} {p[2]} produced no {deb.name}")
        proc = subprocess.run(["dpkg-deb", "-x", str(deb), str(dest)], capture_output=True, text=True)
        if proc.returncode != 0:
            raise SetupError(f"dpkg-deb -x {deb.name} failed: {proc.stderr.strip()}")


def _modinfo_depends(data: bytes) -> list[str]:
    m = re.search(rb"(?:^|\0)depends=([^\0]*)\0", data)
    if not m:
        return []
    return [d.decode() for d in m.group(1).split(b",") if d]


def _prepare_modules(kroot: Path, release: str, out: Path) -> list[Path]:
    moddir = kroot / "usr/lib/modules" / release
    if not moddir.is_dir():
        moddir = kroot / "lib/modules" / release
    index: dict[str, Path] = {}
    for path in moddir.rglob("*.ko*"):
        base = path.name.split(".ko")[0].replace("-", "_")
        index[base] = path
    out.mkdir(parents=True, exist_ok=True)
    order: list[Path] = []
    seen: set[str] = set()

    def load(name: str) -> None:
        name = name.replace("-", "_")
        if name in seen:
            return
        seen.add(name)
        src = index.get(name)
        if src is None:
            return  # built in
        raw = src.read_bytes()
        if src.name.endswith(".xz"):
            raw = lzma.decompress(raw)
        elif src.name.endswith(".zst"):
            raise SetupError(f"{src.name}: zstd-compressed modules are not supported")
        for dep in _modinfo_depends(raw):
            load(dep)
        dst = out / f"{name}.ko"
        dst.write_bytes(raw)
        order.append(dst)

    for m in GUEST_MODULES:
        load(m)
    return order


def _find_vmlinuz(kroot: Path, release: str) -> Path:
    for cand in (
        kroot / "boot" / f"vmlinuz-{release}",
        kroot / "usr/lib/modules" / release / "vmlinuz",
        kroot / "lib/modules" / release / "vmlinuz",
    ):
        if cand.is_file():
            return cand
    found = list(kroot.rglob("vmlinuz*"))
    if found:
        return found[0]
    raise SetupError(f"no vmlinuz for {release} in the unpacked packages")


def _ensure_cross_compiler(log: Callable[[str], None]) -> None:
    if shutil.which(CROSS_GCC):
        return
    if os.geteuid() != 0:
        raise SetupError(
            f"{CROSS_GCC} is missing: install the Debian package gcc-aarch64-linux-gnu "
            "(needs root: apt-get install gcc-aarch64-linux-gnu)"
        )
    log("installing gcc-aarch64-linux-gnu with apt-get")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    cmd = ["apt-get", "install", "-y", "-q", "gcc-aarch64-linux-gnu", "libc6-dev-arm64-cross"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], capture_output=True, env=env)
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0 or not shutil.which(CROSS_GCC):
        raise SetupError(f"apt-get install gcc-aarch64-linux-gnu failed: {proc.stderr.strip()[-400:]}")


def _env_from_cache(cache: Path, kernels: list[str]) -> Env:
    qroot = cache / "root" / "qemu"
    qemu = qroot / "usr/bin/qemu-system-aarch64"
    libdirs = [qroot / "usr/lib/x86_64-linux-gnu", qroot / "lib/x86_64-linux-gnu"]
    qemu_env = {
        "QEMU_MODULE_DIR": str(qroot / "usr/lib/x86_64-linux-gnu/qemu"),
        "LD_LIBRARY_PATH": ":".join(str(d) for d in libdirs if d.is_dir()),
    }
    busybox = cache / "root" / "busybox" / "oracle-busybox"
    env = Env(cache, qemu, qroot / "usr/share/qemu", qemu_env, busybox)
    for k in kernels:
        pin = KERNELS[k]
        info_path = cache / "root" / f"kernel-{k}" / "oracle.json"
        info = json.loads(info_path.read_text())
        env.kernels[k] = KernelFiles(
            k, pin.release, Path(info["vmlinuz"]), [Path(p) for p in info["modules"]]
        )
    return env


def load_env(cache: Path | None, kernels: list[str]) -> Env:
    """The set-up made by `ensure`, or SetupError naming what is missing."""
    cache = Path(cache) if cache else default_cache()
    parts = [("qemu", QEMU_PACKAGES + QEMU_LIBS), ("busybox", BUSYBOX)]
    parts += [(f"kernel-{k}", KERNELS[k].packages) for k in kernels]
    for part, pins in parts:
        if not _stamp_ok(cache / "root" / f"{part}.ok", pins):
            raise SetupError(
                f"kernel oracle set-up missing ({part} in {cache}): run `mteswap kernel setup"
                f" --kernel {'all' if len(kernels) > 1 else kernels[0]}`"
            )
    if not (cache / "root" / "sanity.ok").is_file():
        raise SetupError(f"QEMU MTE sanity check has not passed in {cache}: run `mteswap kernel setup`")
    if not shutil.which(CROSS_GCC):
        raise SetupError(f"{CROSS_GCC} missing: run `mteswap kernel setup`")
    return _env_from_cache(cache, kernels)


def ensure(kernels: list[str], cache: Path | None = None, log: Callable[[str], None] = print) -> tuple[Env, bool]:
    """Make the set-up; returns (env, changed). A second run with the set-up in place does nothing."""
    cache = Path(cache) if cache else default_cache()
    root = cache / "root"
    debs = cache / "debs"
    root.mkdir(parents=True, exist_ok=True)
    apt = _PrivateApt(cache / "apt", log)
    changed = False

    _ensure_cross_compiler(log)

    parts: list[tuple[str, list]] = [("qemu", QEMU_PACKAGES + QEMU_LIBS), ("busybox", BUSYBOX)]
    parts += [(f"kernel-{k}", KERNELS[k].packages) for k in kernels]
    for part, pins in parts:
        stamp = root / f"{part}.ok"
        if _stamp_ok(stamp, pins):
            continue
        changed = True
        log(f"fetching and unpacking {part}")
        stamp.unlink(missing_ok=True)
        dest = root / part
        _unpack(pins, debs, dest, apt)
        if part.startswith("kernel-"):
            k = part[len("kernel-") :]
            pin = KERNELS[k]
            vmlinuz = _find_vmlinuz(dest, pin.release)
            mods = _prepare_modules(dest, pin.release, dest / "oracle-modules")
            (dest / "oracle.json").write_text(
                json.dumps({"vmlinuz": str(vmlinuz), "modules": [str(m) for m in mods]})
            )
        if part == "busybox":
            found = [p for p in (dest / "usr/bin/busybox", dest / "bin/busybox") if p.is_file()
                     and p.read_bytes()[:4] == b"\x7fELF"]
            if not found:
                raise SetupError("busybox-static unpacked no busybox ELF binary")
            shutil.copy2(found[0], dest / "oracle-busybox")
        stamp.write_text(json.dumps(pins))

    env = _env_from_cache(cache, kernels)
    sanity_stamp = root / "sanity.ok"
    if not sanity_stamp.is_file():
        changed = True
        from . import guest

        log("checking QEMU's MTE emulation (STG/LDG sanity run)")
        kname = kernels[0]
        ok, detail = guest.sanity_check(env, kname)
        if not ok:
            raise SetupError(f"QEMU MTE sanity check failed: {detail}")
        sanity_stamp.write_text(detail + "\n")
        log(f"sanity: {detail}")
    return env, changed


def compile_c(source: str, out: Path) -> None:
    """Cross-compile one static aarch64 program."""
    with tempfile.NamedTemporaryFile("w", suffix=".c", delete=False) as f:
        f.write(source)
        src = f.name
    try:
        proc = subprocess.run(
            [CROSS_GCC, *CFLAGS, "-o", str(out), src], capture_output=True, text=True
        )
    finally:
        os.unlink(src)
    if proc.returncode != 0:
        raise SetupError(f"cross compile failed:\n{proc.stderr[-3000:]}")
