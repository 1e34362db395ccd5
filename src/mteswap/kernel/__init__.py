"""Real-kernel oracle: run scenarios on a stock Debian arm64 kernel with MTE under QEMU.

Sub-modules (imported lazily by the CLI so that `import mteswap` never depends on them):

- `setup`: pinned Debian packages (QEMU 10, kernels 6.12 / 7.2, busybox), private apt state,
  cache folder, STG/LDG sanity run.
- `cgen`: scenario -> C program (guest batch program and standalone TAP export).
- `guest`: initramfs, boot, result parsing.
- `compare`: kernel outcome vs the model's outcome under `merged`.
- `cli`: the Typer sub-app `kernel_app` (`setup`, `run`, `export`).
"""
