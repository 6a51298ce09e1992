"""`strata cost`: the cost report. `model` (pure: readings and prices -> report),
`exposition` (one /metrics page -> a reading), `sources` (/metrics pages, Prometheus),
`fetch` (one bounded HTTP GET, no redirects), `errors` (`SourceError`, the sample check),
`render` (table, JSON), `cli` (the verb)."""
