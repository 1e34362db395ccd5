"""The simulated machine: state plus kernel operations, no I/O.

Each function is named after the kernel function it stands for and its docstring names the
kernel file. Nothing here imports the explorer, the scenario layer or the CLI.
"""

from mteswap.model.machine import Machine, MachineConfig

__all__ = ["Machine", "MachineConfig"]
