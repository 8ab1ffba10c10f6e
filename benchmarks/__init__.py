"""benchmark.py's parts: `settings`, `harness`, one module per section (`inference`, `training`,
`pipeline`, `strategy`), the `cpu` and `gpu` runs, `targets` (goals as data) and `report`."""
