"""`mteswap check`: exhaustive and random exploration of the model (docs/checking.md).

The explorer drives the model only through the scenario layer (`Runner.run_step` on `Step`s),
`Runner.clone()` / `Machine.clone()` to branch a state, and `Machine.snapshot()` /
`Expectation.snapshot()` to fingerprint it. `mteswap.model` never imports this package.
"""
