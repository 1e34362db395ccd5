"""The oracle: what each simulated process should observe if memory never left RAM, and the
checks that turn a difference into a violation (scenario-format.md, "What the program
expects").

- program.py: the program's side, per process and page the pointer tags it holds and the
  value it last wrote;
- registry.py: every check by name (`check_names()`), the order they run in, and how to
  switch one off (`Oracle(disabled=...)`); I3, I4, I6 and I11 and why they have no check;
- invariants.py: the invariants of kernel-semantics.md §5 a state can show, one function
  each; tag_storage.py: saved-tag leaks and reads of unpinned buffers;
- core.py: the Oracle, which the runner calls on every access and after every step.
"""

from mteswap.oracle.core import Oracle
from mteswap.oracle.origin import describe_origin
from mteswap.oracle.program import Expectation, ProgramView
from mteswap.oracle.registry import CHECKS, NOT_STATE_CHECKS, check_names
from mteswap.oracle.violation import KINDS, StepContext, Violation

__all__ = ["Oracle", "describe_origin", "Expectation", "ProgramView", "CHECKS",
           "NOT_STATE_CHECKS", "check_names", "KINDS", "StepContext", "Violation"]
