"""A node's plugin-server metrics: each worker's counts (`kong_plugin.plugin_metrics`),
asked for at scrape time over the worker's private socket, added up, and rendered in
Prometheus' text format.

Why ask at scrape time rather than share files (prometheus_client's multiprocess mode): the
request path then only bumps a dict entry in its own process (no lock shared between
processes, no file write), the ``stats()`` the other parts keep are read exactly when
scraped instead of copied out on a timer, and a dead worker leaves no file behind.

Totals. Counters and histograms are, per worker index, the last counts that worker gave,
plus everything its earlier processes gave before they were replaced (`Totals`): so a
node's total never goes down when a worker restarts (Prometheus would read a drop as a
reset and count the new value again) and never exceeds the truth; what a dead worker
counted after its last scrape is lost. Gauges are the sum of this scrape's answers only.

Bounded. A scrape asks every worker at once and waits at most `ASK_TIMEOUT_S`; a worker
that is busy, hung, gone or answers nonsense is counted in
``strata_plugin_scrape_errors_total{reason}`` and contributes its last counters and no
gauges. Scrapes are served one at a time and an answer younger than `MIN_INTERVAL_S` is
reused, so however often the endpoint is hit, workers are asked at most
``1 / MIN_INTERVAL_S`` times a second.

Not guaranteed: a consistent cut (workers answer at slightly different moments); counts of
a supervisor's earlier life (the supervisor keeps the totals in memory).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import msgpack  # type: ignore[import-untyped]
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from kong_plugin.plugin_metrics import BY_NAME, FAMILIES, OTHER, SCRAPE_ERRORS, Snapshot
from kong_plugin.pluginserver.framing import new_unpacker
from kong_plugin.pluginserver.worker import METRICS_METHOD, relay_path

log = logging.getLogger("strata.pluginserver")

#: Longest a scrape waits for the workers' answers.
ASK_TIMEOUT_S = 1.0
#: A scrape within this long of the last one gets the same answer.
MIN_INTERVAL_S = 0.5
#: Largest answer read from a worker.
MAX_ANSWER_BYTES = 1 << 20

Values = dict[str, dict[str, float]]
Buckets = dict[str, dict[str, list[float]]]


class Census:
    """What the supervisor knows of its workers: how many run now, how many restarts.
    Written by the supervisor's loop, read by the scrape (plain ints)."""

    def __init__(self) -> None:
        self.live = 0
        self.restarts = 0


class Totals:
    """Counters and histograms of a node over its workers' restarts (module doc)."""

    def __init__(self) -> None:
        self._retired_counters: Values = {}
        self._retired_histograms: Buckets = {}
        self._last: dict[int, Snapshot] = {}

    def add(self, index: int, snap: Snapshot) -> None:
        """Worker `index` answered `snap`; a new pid there retires the previous one's."""
        before = self._last.get(index)
        if before is not None and before.get("pid") != snap.get("pid"):
            _add_values(self._retired_counters, before.get("counters", {}))
            _add_buckets(self._retired_histograms, before.get("histograms", {}))
        self._last[index] = snap

    def counters(self) -> Values:
        out: Values = {}
        _add_values(out, self._retired_counters)
        for snap in self._last.values():
            _add_values(out, snap.get("counters", {}))
        return out

    def histograms(self) -> Buckets:
        out: Buckets = {}
        _add_buckets(out, self._retired_histograms)
        for snap in self._last.values():
            _add_buckets(out, snap.get("histograms", {}))
        return out


def _add_values(into: Values, more: Mapping[str, Mapping[str, float]]) -> None:
    for name, by_label in more.items():
        target = into.setdefault(name, {})
        for label, value in by_label.items():
            target[label] = target.get(label, 0) + value


def _add_buckets(into: Buckets, more: Mapping[str, Mapping[str, list[float]]]) -> None:
    for name, by_label in more.items():
        target = into.setdefault(name, {})
        for label, counts in by_label.items():
            have = target.get(label)
            if have is None or len(have) != len(counts):
                target[label] = list(counts)
            else:
                target[label] = [a + b for a, b in zip(have, counts, strict=True)]


def _valid(answer: Any) -> bool:
    return (
        isinstance(answer, dict)
        and isinstance(answer.get("pid"), int)
        and all(isinstance(answer.get(k, {}), dict) for k in ("counters", "gauges", "histograms"))
    )


async def ask(path: str, timeout_s: float = ASK_TIMEOUT_S) -> Snapshot:
    """One worker's snapshot, over its private socket at `path`. Raises TimeoutError,
    OSError, or ValueError for an answer that is not one."""

    async def exchange() -> Snapshot:
        reader, writer = await asyncio.open_unix_connection(path)
        try:
            writer.write(msgpack.packb([0, 1, METRICS_METHOD, []], use_bin_type=True))
            unpacker = new_unpacker()
            read = 0
            while True:
                chunk = await reader.read(65536)
                if not chunk:
                    raise ValueError("connection closed before an answer")
                read += len(chunk)
                if read > MAX_ANSWER_BYTES:
                    raise ValueError("answer too large")
                unpacker.feed(chunk)
                answer = next(iter(unpacker), None)
                if answer is not None:
                    break
        finally:
            writer.close()
        if not (isinstance(answer, list) and len(answer) == 4 and answer[0] == 1):
            raise ValueError(f"not an answer: {answer!r:.80}")
        _, _, err, result = answer
        if err is not None or not _valid(result):
            raise ValueError(f"no snapshot: {err!r:.80}")
        return result  # type: ignore[no-any-return]

    return await asyncio.wait_for(exchange(), timeout_s)


class NodeMetrics:
    """The supervisor's view: asks `count` workers of the server at `socket_path`."""

    def __init__(
        self,
        socket_path: str,
        count: int,
        census: Census,
        *,
        timeout_s: float = ASK_TIMEOUT_S,
        min_interval_s: float = MIN_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.socket_path = socket_path
        self.count = count
        self.census = census
        self.timeout_s = timeout_s
        self.min_interval_s = min_interval_s
        self.totals = Totals()
        self.errors = dict.fromkeys(SCRAPE_ERRORS, 0)
        self._clock = clock
        self._lock: asyncio.Lock | None = None
        self._cached: tuple[float, bytes] | None = None

    async def collect(self) -> bytes:
        """The node's metrics as Prometheus text (module doc for bounds and reuse)."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            now = self._clock()
            if self._cached is not None and now - self._cached[0] < self.min_interval_s:
                return self._cached[1]
            text = await self._collect()
            self._cached = (self._clock(), text)
            return text

    async def _collect(self) -> bytes:
        paths = [relay_path(self.socket_path, i) for i in range(self.count)]
        answers = await asyncio.gather(
            *(ask(p, self.timeout_s) for p in paths), return_exceptions=True
        )
        fresh: list[Snapshot] = []
        for index, answer in enumerate(answers):
            if isinstance(answer, BaseException):
                reason = _reason(answer)
                self.errors[reason] += 1
                log.debug("worker %d gave no metrics (%s): %r", index, reason, answer)
                continue
            self.totals.add(index, answer)
            fresh.append(answer)
        gauges: Values = {}
        for snap in fresh:
            _add_values(gauges, snap.get("gauges", {}))
        own: Values = {
            "strata_plugin_workers": {"": self.census.live},
            "strata_plugin_worker_restarts_total": {"": self.census.restarts},
            "strata_plugin_scrape_errors_total": dict(self.errors),
        }
        counters = self.totals.counters()
        for name, values in own.items():
            (gauges if BY_NAME[name].kind == "gauge" else counters)[name] = values
        return render(counters, gauges, self.totals.histograms())


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, OSError):
        return "unreachable"
    return "bad-answer"


class LocalMetrics:
    """One process's own metrics (the kong-pdk engine: no workers to ask)."""

    def __init__(self, snapshot: Callable[[], Snapshot]) -> None:
        self._snapshot = snapshot

    async def collect(self) -> bytes:
        snap = self._snapshot()
        gauges = dict(snap.get("gauges", {}))
        gauges["strata_plugin_workers"] = {"": 1}
        counters = dict(snap.get("counters", {}))
        counters["strata_plugin_worker_restarts_total"] = {"": 0}
        counters["strata_plugin_scrape_errors_total"] = dict.fromkeys(SCRAPE_ERRORS, 0)
        return render(counters, gauges, snap.get("histograms", {}))


def render(counters: Values, gauges: Values, histograms: Buckets) -> bytes:
    """Every family of `kong_plugin.plugin_metrics.FAMILIES` in Prometheus' text format:
    known label values shown at 0 when nothing counted them, a family no source gave
    (analytics before its module exists) left out."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(counters, gauges, histograms))
    return generate_latest(registry)


class _Families(Collector):
    def __init__(self, counters: Values, gauges: Values, histograms: Buckets) -> None:
        self._values = {**counters, **gauges}
        self._histograms = histograms

    def collect(self) -> Iterator[Metric]:
        for family in FAMILIES:
            labels = [family.label] if family.label else []
            if family.kind == "histogram":
                got = self._histograms.get(family.name)
                if got is None:
                    continue
                h = HistogramMetricFamily(family.name, family.help, labels=labels)
                for value, state in _labelled(family.values, got, []):
                    if len(state) != len(family.buckets) + 2:
                        continue  # a worker of another version: skip rather than misstate
                    h.add_metric(
                        [value] if labels else [], _cumulative(family.buckets, state), state[-1]
                    )
                yield h
                continue
            values = self._values.get(family.name)
            if values is None:
                continue
            m: CounterMetricFamily | GaugeMetricFamily
            if family.kind == "counter":
                m = CounterMetricFamily(family.name, family.help, labels=labels)
            else:
                m = GaugeMetricFamily(family.name, family.help, labels=labels)
            if not labels:
                m.add_metric([], float(values.get("", 0)))
            else:
                for value, n in _labelled(family.values, values, 0):
                    m.add_metric([value], float(n))
            yield m


def _labelled(known: Iterable[str], got: Mapping[str, Any], zero: Any) -> Iterator[tuple[str, Any]]:
    """(label value, value): the `known` values first (`zero` when absent), then the rest
    in name order."""
    known = tuple(known)
    for value in known:
        yield value, got.get(value, zero)
    for value in sorted(set(got) - set(known)):
        if value != OTHER or OTHER not in known:
            yield value, got[value]


def _cumulative(bounds: tuple[float, ...], state: list[float]) -> list[tuple[str, float]]:
    out: list[tuple[str, float]] = []
    running = 0.0
    for bound, n in zip((*bounds, float("inf")), state[:-1], strict=True):
        running += n
        out.append(("+Inf" if bound == float("inf") else repr(bound), running))
    return out
