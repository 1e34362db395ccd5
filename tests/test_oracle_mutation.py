"""The mutation test of the oracle: every check of the registry, switched off on its own,
makes some test of test_oracle_checks.py fail. A check whose removal no test notices could
be deleted unseen; this test names it.

Each mutant is a pytest run in a subprocess (the plugin oracle_mutation_plugin.py switches
the check off there), two at a time; the whole takes some 10-20 s."""

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from mteswap.oracle import check_names

TESTS = Path(__file__).parent
ROOT = TESTS.parent


def pytest_exit_status(disabled: str) -> int:
    """Exit status of test_oracle_checks.py with the check `disabled` switched off ("" for
    none): 0 when every test passed, 1 when one failed (-x: the run stops there)."""
    env = dict(os.environ, MTESWAP_ORACLE_DISABLE=disabled,
               PYTHONPATH=os.pathsep.join([str(TESTS)] + sys.path))
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
         "-p", "oracle_mutation_plugin", str(TESTS / "test_oracle_checks.py")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode in (0, 1), proc.stdout[-2000:] + proc.stderr[-2000:]
    return proc.returncode


def test_every_check_switched_off_alone_fails_a_test():
    names = ("",) + check_names()     # "" first: nothing off, every test must pass
    with ThreadPoolExecutor(max_workers=2) as pool:
        status = dict(zip(names, pool.map(pytest_exit_status, names)))
    assert status.pop("") == 0, "test_oracle_checks.py fails with every check on"
    survivors = [name for name, rc in status.items() if rc == 0]
    assert survivors == [], f"no test fails with these checks switched off: {survivors}"
