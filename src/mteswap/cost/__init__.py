"""`mteswap cost` (issue 6): what each design costs on parameterised workloads.

`workloads` generates scenario steps (run by the same model as every scenario), `run` runs
them under several designs and collects counters, `cli` is the command's front end.
"""
