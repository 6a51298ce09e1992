"""`strata cost`: the cost report. `model` (pure: readings and prices -> report),
`exposition` (one /metrics page -> a reading), `sources` (HTTP: /metrics pages, Prometheus),
`render` (table, JSON), `cli` (the verb)."""
