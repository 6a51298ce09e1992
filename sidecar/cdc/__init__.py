"""`strata cdc`: row changes of PostgreSQL tables to invalidation events.

One module per job: `pgoutput` (decoding the replication messages), `changes` (messages to
committed transactions of row changes), `catalog` (start-up checks of the mapped tables),
`slot` (the replication slot and publications through SQL, and their ownership),
`mapping` (table + key -> tags), `debezium` (Debezium envelopes to row changes),
`outgoing` (tags to v1 events with deterministic ids), `publish` (delivery to Kafka),
`translate` (changes to events, counted and logged), `runner` (the slot loop),
`debezium_consumer` (the Debezium loop), `cli` (``strata cdc``).

Delivery is at-least-once: a position (the slot, a consumer offset) moves only after the
broker acknowledged the events of what was read; a re-read produces the same event ids.
"""
