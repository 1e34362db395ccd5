"""pytest plugin for test_oracle_mutation.py: switches off the oracle check named in the
environment variable MTESWAP_ORACLE_DISABLE (through the registry's DISABLED) for the whole
run. Loaded with `-p oracle_mutation_plugin` (tests/ on PYTHONPATH)."""

import os

from mteswap.oracle import registry

VARIABLE = "MTESWAP_ORACLE_DISABLE"


def pytest_configure(config):
    name = os.environ.get(VARIABLE, "")
    if name:
        registry.DISABLED = registry.resolve_disabled({name})
