"""`mteswap check`: exhaustive and random exploration of the model (docs/checking.md).

The searches see the system only through `explore.model.Model` (init, actions, step,
properties), which drives it through the runner's public methods (`run_step`, `clone`,
`snapshot`, `can_apply`, `violations`, `counters`). `mteswap.model` never imports this package.
"""
