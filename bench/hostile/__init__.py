"""Hostile gRPC clients against a real sidecar: its RSS and another client's latency.

Starts a sidecar (memory tier only, a small memory budget) on a unix socket, then runs each
scenario in turn while a well-behaved client (a thread of its own) sends a unary Lookup
every `VICTIM_INTERVAL_S` with a deadline, and a sampler reads the sidecar's resident set:

* ``batch``: one Exchange message of `--batch-calls` coalescing lookups of a few missing
  keys (the first of each key gets the fill lease, the rest wait for a fill that never
  comes), then one of `--empty-calls` empty calls (2 bytes each: the most calls a message
  of the size limit can carry).
* ``slow-readers``: `--streams` Exchange streams that send batches of lookups of a large
  entry and never read a reply; each keeps writing until its writes block (or
  `--max-writes` went out).
* ``big-reply``: one batch whose replies together exceed the message limit, then one more
  call on the same stream (does the stream survive?).
* ``tiny-fields``: `--rounds` rounds of one unary Lookup and one Exchange message, each
  16 MB of one-byte request headers (millions of tiny repeated fields); the RSS after
  each round shows whether refused requests are freed.
* ``unary-slow-readers``: a child process sends `--streams` unary Lookups of the large
  entry and stops itself (SIGSTOP) before reading any reply; it is killed after
  `--seconds` / 4.
* ``big-requests``: `--streams` / 2 unary Stores of a 16 MB body at once (bytes being
  parsed across calls).
* ``idle-streams``: one client holds `--idle-streams` idle Exchange streams while another
  opens a stream per call, `--rounds` * 10 times: how many of its calls are answered.

Prints JSON: per scenario, the sidecar's RSS before and at its peak (MiB), how the hostile
client was answered, and the victim's worst latency and failed calls. Every scenario is
bounded in time (`--seconds`). `--checkout DIR` runs the sidecar of another source tree (its
root is its working directory, it and its ``proto/`` its PYTHONPATH) to compare before and
after.

Imports none of the product's packages (only the generated contract). The attacks are in
`bench.hostile.attacks`, the sidecar, victim and RSS sampler in `bench.hostile.harness`,
the scenario table and the run in `bench.hostile.scenarios`.
"""

from __future__ import annotations

from bench.hostile.attacks import (
    hostile_batch,
    hostile_big_reply,
    hostile_big_requests,
    hostile_empty_batch,
    hostile_idle_streams,
    hostile_slow_readers,
    hostile_tiny_fields,
    hostile_unary_slow_readers,
    store,
)
from bench.hostile.harness import RssSampler, Victim, VictimReport, start_sidecar
from bench.hostile.scenarios import SCENARIOS, add_arguments, measure, run

__all__ = [
    "SCENARIOS",
    "RssSampler",
    "Victim",
    "VictimReport",
    "add_arguments",
    "hostile_batch",
    "hostile_big_reply",
    "hostile_big_requests",
    "hostile_empty_batch",
    "hostile_idle_streams",
    "hostile_slow_readers",
    "hostile_tiny_fields",
    "hostile_unary_slow_readers",
    "measure",
    "run",
    "start_sidecar",
    "store",
]
