"""Scenario files: loading and validation (see docs/scenario-format.md)."""

from mteswap.scenario.load import (
    ALL,
    OPS,
    SWAP_DEVICES,
    VERDICTS,
    VIOLATION_KINDS,
    Config,
    Expected,
    FieldSpec,
    Scenario,
    ScenarioError,
    Step,
    load_scenario,
    parse_scenario,
)

__all__ = [
    "ALL",
    "OPS",
    "SWAP_DEVICES",
    "VERDICTS",
    "VIOLATION_KINDS",
    "Config",
    "Expected",
    "FieldSpec",
    "Scenario",
    "ScenarioError",
    "Step",
    "load_scenario",
    "parse_scenario",
]
