"""Every sidecar setting, its default, its help text and its check: the one table.

Names are the TOML keys; the environment variable is ``STRATA_<NAME>`` and the flag
``--<name-with-dashes>`` (`sidecar.config.loading`). Every numeric setting has a `Range`
(finite, minimum and maximum in its unit; durations take units, see
`sidecar.core.quantities`). A secret setting (``secret=True``: Redis URL, PostgreSQL DSN) is
masked in `redacted()` and left out of `repr()`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from sidecar.config.kafka_values import (
    check_bootstrap,
    check_dead_letter_topic,
    check_node_id,
    check_topic,
)
from sidecar.config.values import (
    check_listen,
    check_namespace,
    check_optional_host_port,
    check_postgres_dsn,
    check_redis_url,
    check_servers,
    one_of,
    parse_bool,
    parse_size,
    setting,
)
from sidecar.core.errors import ConfigError
from sidecar.core.quantities import Range, count, milliseconds, seconds, whole_seconds
from sidecar.core.redact import MASK, redact

#: Secret settings that are opaque tokens (no URL or DSN around the secret): masked whole.
OPAQUE_SECRETS = frozenset({"admin_token"})


def _check_admin_token(value: str) -> None:
    from sidecar.admin.auth import check_token_setting  # noqa: PLC0415

    check_token_setting(value)


def _check_admin_listen(value: str) -> None:
    from sidecar.admin.listen import check_admin_listen  # noqa: PLC0415

    check_admin_listen(value)


def _check_admin_token_file(value: str) -> None:
    from sidecar.admin.auth import check_token_file_setting  # noqa: PLC0415

    check_token_file_setting(value)


def _check_analytics_topic(value: str) -> None:
    """Empty (analytics off) or a Kafka topic name."""
    if value:
        check_topic(value)


#: The node-local default shared with the plugin's `sidecar.address` default.
DEFAULT_LISTEN = "unix:/run/strata/sidecar.sock"

KIB, MIB, GIB, TIB = 1024, 1024**2, 1024**3, 1024**4
DAY = 24 * 3600
MINUTE_MS = 60_000
#: Upper bounds of `max_body_bytes` and `max_header_bytes`: the gRPC message limit derived
#: from them (`sidecar.app.max_message_bytes`, about twice their sum) must fit a C int.
MAX_BODY_BYTES = 512 * MIB
MAX_HEADER_BYTES = 16 * MIB


@dataclass(frozen=True, slots=True)
class SidecarConfig:
    """Every sidecar setting with its default. Names are the TOML keys; the environment
    variable is STRATA_<NAME upper-cased> and the flag --<name with dashes>."""

    listen: str = setting(
        DEFAULT_LISTEN,
        "gRPC listen address: unix:/abs/path (node-local, the default) or HOST:PORT; a "
        "missing socket folder is created 0750, one other users can write to is refused",
        check=check_listen,
    )
    socket_takeover: bool = setting(
        True,
        "start even while another sidecar of the same uid answers on the unix socket, taking "
        "the path over (it drains and exits); false: refuse to start while any process "
        "answers there. A live socket of another uid is never taken over",
        parse=parse_bool,
    )
    metrics_listen: str = setting(
        "127.0.0.1:9464",
        "HOST:PORT serving Prometheus /metrics; empty or 'off' disables it",
        check=check_optional_host_port,
    )
    memory_max_bytes: int = setting(
        256 * 1024**2,
        "byte budget of the in-process memory tier (accepts 256MiB, 1g, ...)",
        parse=parse_size,
        check=Range(MIB, 16 * TIB, "bytes", zero="stores nothing"),
    )
    admission: str = setting(
        "tinylfu",
        "memory tier admission policy: tinylfu (keeps one-hit wonders out) or always",
        check=one_of("tinylfu", "always"),
    )
    max_key_bytes: int = setting(
        2048,
        "longest cache key accepted, in bytes",
        parse=parse_size,
        check=Range(64, 64 * KIB, "bytes"),
    )
    max_body_bytes: int = setting(
        8 * 1024**2,
        "largest response body accepted by Store, in bytes",
        parse=parse_size,
        check=Range(KIB, MAX_BODY_BYTES, "bytes"),
    )
    max_headers: int = setting(
        256, "most header lines in one entry", parse=count, check=Range(16, 4096)
    )
    max_header_bytes: int = setting(
        64 * 1024,
        "largest total size of an entry's header names and values",
        parse=parse_size,
        check=Range(KIB, MAX_HEADER_BYTES, "bytes"),
    )
    max_ttl_seconds: int = setting(
        365 * 24 * 3600,
        "longest an entry lives after it was stored: a longer TTL, stale window (beyond what "
        "the TTL leaves) or storage TTL is clamped to it, counted and logged",
        parse=whole_seconds,
        check=Range(1, 3650 * DAY, "s"),
    )
    coalesce_max_wait_ms: int = setting(
        5000,
        "cap on how long a coalesced lookup may wait for another caller's fill",
        parse=milliseconds,
        check=Range(1, MINUTE_MS, "ms", zero="no waiting"),
    )
    lease_ttl_ms: int = setting(
        10000,
        "how long a fill lease lasts when its holder never stores or releases",
        parse=milliseconds,
        check=Range(10, 10 * MINUTE_MS, "ms"),
    )
    generations_cache_ms: int = setting(
        1000,
        "how long a sidecar reuses tag generation counters read from Redis (other sidecars "
        "see a tag purge within this)",
        parse=milliseconds,
        check=Range(1, MINUTE_MS, "ms", zero="read every time"),
    )
    generations_max_records: int = setting(
        100_000,
        "tag purge records kept in this process (400-650 bytes of RSS each, outside the memory "
        "tier's budget); beyond it, without Redis "
        "every entry is treated as purged once (an epoch bump), with Redis those expiring "
        "first are forgotten here (re-read from Redis)",
        parse=count,
        check=Range(1000, 10_000_000),
    )
    sweep_interval_seconds: float = setting(
        5.0, "how often expired entries are swept out", parse=seconds, check=Range(0.1, 3600, "s")
    )
    shutdown_grace_seconds: float = setting(
        10.0,
        "when stopping (SIGTERM, or another sidecar took the socket over), the most time "
        "calls in flight may take before they are cancelled; an idle sidecar stops at once",
        parse=seconds,
        check=Range(0.001, 600, "s", zero="cancel at once"),
    )
    log_level: str = setting(
        "INFO",
        "log level: DEBUG, INFO, WARNING, ERROR",
        parse=str.upper,
        check=one_of("DEBUG", "INFO", "WARNING", "ERROR"),
    )
    log_format: str = setting(
        "ecs", "log format: ecs (JSON for the ELK stack) or text", check=one_of("ecs", "text")
    )
    redis_url: str = setting(
        "",
        "Redis URL for the shared tier (redis://, rediss://, unix://, redis[s]+cluster://h:p,h:p); "
        "empty = not used",
        check=check_redis_url,
        secret=True,
    )
    memcached_servers: str = setting(
        "",
        "comma-separated HOST:PORT list for the Memcached tier; empty = not used",
        check=check_servers,
    )
    postgres_dsn: str = setting(
        "",
        "PostgreSQL DSN for the durable fallback tier; empty = not used",
        check=check_postgres_dsn,
        secret=True,
    )
    redis_timeout_ms: int = setting(
        50,
        "deadline of one Redis operation; a slower Redis is skipped",
        parse=milliseconds,
        check=Range(1, MINUTE_MS, "ms"),
    )
    memcached_timeout_ms: int = setting(
        50,
        "deadline of one Memcached operation",
        parse=milliseconds,
        check=Range(1, MINUTE_MS, "ms"),
    )
    postgres_timeout_ms: int = setting(
        200,
        "deadline of one PostgreSQL statement",
        parse=milliseconds,
        check=Range(1, MINUTE_MS, "ms"),
    )
    lookup_budget_ms: int = setting(
        40,
        "time one lookup may spend reading the shared tiers: each tier call gets the smaller of "
        "its own timeout and what is left, a tier that misses it counts as failing; keep it "
        "below the plugin's sidecar.timeout_ms (0 = each tier's own timeout only)",
        parse=milliseconds,
        check=Range(1, MINUTE_MS, "ms", zero="tier timeouts only"),
    )
    max_batch_calls: int = setting(
        128,
        "most calls in one Exchange message; a larger batch runs none of them and gets one "
        "RESOURCE_EXHAUSTED error reply (the plugin sends at most 64)",
        parse=count,
        check=Range(64, 100_000),
    )
    max_streams: int = setting(
        256,
        "most Exchange streams open at once (the plugin opens one per busy thread); a new "
        "one above it ends the longest-idle stream (status OK: its client reopens), or gets "
        "RESOURCE_EXHAUSTED when none is idle",
        parse=count,
        check=Range(1, 100_000),
    )
    max_watch_streams: int = setting(
        256,
        "most Watch streams open at once (each plugin-server worker holds one per sidecar "
        "to keep its near-cache coherent); one more is ended at once with "
        "RESOURCE_EXHAUSTED and that worker's near-cache stays off",
        parse=count,
        check=Range(1, 100_000),
    )
    max_unary_in_flight: int = setting(
        1024,
        "most unary calls (Lookup, Store, ...) being handled at once; one more gets "
        "RESOURCE_EXHAUSTED",
        parse=count,
        check=Range(1, 1_000_000),
    )
    max_coalesce_waiters: int = setting(
        1024,
        "most lookups waiting for another caller's fill at once; above it a lookup does not "
        "wait (nor take the fill lease)",
        parse=count,
        check=Range(1, 1_000_000),
    )
    max_pending_reply_bytes: int = setting(
        8 * MIB,
        "bytes of replies written but not yet read by their clients, all Exchange streams "
        "and unary Lookups together (they hold 2-3 times this in RAM); a reply that would go "
        "above it gets RESOURCE_EXHAUSTED instead (a reply message of at most 64KiB, or one "
        "alone, always goes)",
        parse=parse_size,
        check=Range(MIB, 64 * GIB, "bytes"),
    )
    max_request_bytes_in_flight: int = setting(
        64 * MIB,
        "bytes of requests over 64KiB being parsed and handled at once, all calls together; "
        "one more is refused unparsed with RESOURCE_EXHAUSTED (one alone always goes)",
        parse=parse_size,
        check=Range(MIB, 64 * GIB, "bytes"),
    )
    tier_failure_threshold: int = setting(
        5,
        "consecutive failures after which a shared tier is skipped without being asked",
        parse=count,
        check=Range(1, 1000),
    )
    tier_open_seconds: float = setting(
        2.0,
        "how long a failing shared tier is skipped before one call probes it again",
        parse=seconds,
        check=Range(0.1, 600, "s"),
    )
    shared_min_hits: int = setting(
        2,
        "lookups of a key on this node (0-15) before its entries go to shared RAM "
        "(Redis/Memcached) once that tier has no room (see shared_room_fraction); colder ones "
        "go to memory and PostgreSQL only, and the memory hit that reaches this count writes "
        "the entry to shared RAM (promotion)",
        parse=count,
        check=Range(0, 15),
    )
    shared_room_fraction: float = setting(
        0.8,
        "while a shared RAM tier's sampled usage is below this share of its limit (the smaller "
        "of its *_max_bytes budget and its server's own: Redis maxmemory, memcached -m), "
        "entries go there from their first lookup, not only after shared_min_hits; usage is "
        "sampled every budget_sample_seconds, plus what this node placed since; "
        "0 = never (a tier with neither limit never counts as having room)",
        parse=float,
        check=Range(0, 1),
    )
    redis_max_entry_bytes: int = setting(
        65536,
        "largest hot entry (raw body + headers) placed in Redis when Memcached is configured; "
        "larger ones go to Memcached",
        parse=parse_size,
        check=Range(0, 512 * MIB, "bytes"),
    )
    memcached_max_entry_bytes: int = setting(
        1048576 - 1024,
        "largest entry (raw body + headers) placed in shared RAM (Memcached, or Redis alone); "
        "larger ones go to memory and PostgreSQL only",
        parse=parse_size,
        check=Range(0, GIB, "bytes"),
    )
    redis_max_bytes: int = setting(
        0,
        "Strata's byte budget of Redis: while INFO used_memory (the whole server's) is at or "
        "above it, no new entries go to Redis; 0 = none (Redis's own maxmemory applies)",
        parse=parse_size,
        check=Range(1, 16 * TIB, "bytes", zero="no budget"),
    )
    memcached_max_bytes: int = setting(
        0,
        "Strata's byte budget of Memcached: while stats bytes summed over the servers is at or "
        "above it, no new entries go to Memcached; 0 = none (memcached -m applies)",
        parse=parse_size,
        check=Range(1, 16 * TIB, "bytes", zero="no budget"),
    )
    postgres_max_bytes: int = setting(
        0,
        "Strata's byte budget of PostgreSQL: while pg_total_relation_size('strata_entries') "
        "is at or above it, no new entries go to PostgreSQL; 0 = none (the disk is the limit)",
        parse=parse_size,
        check=Range(1, 1024 * TIB, "bytes", zero="no budget"),
    )
    budget_sample_seconds: float = setting(
        5.0,
        "how often the shared tiers' usage is sampled (their strata_tier_bytes, and the "
        "check of a byte budget where one is set)",
        parse=seconds,
        check=Range(0.1, 3600, "s"),
    )
    durable_tier: bool = setting(
        True,
        "write every entry to PostgreSQL, the durable long tail (when configured); "
        "false: nothing new is written there",
        parse=parse_bool,
    )
    namespace: str = setting(
        "strata",
        "prefix of every key in the shared tiers (separates clusters sharing a server)",
        check=check_namespace,
    )
    admin_listen: str = setting(
        "127.0.0.1:8790",
        "HOST:PORT (TCP) of the admin purge API (strata purge); it runs only when admin_token or "
        "admin_token_file is set; an address other than loopback is warned about at start",
        check=_check_admin_listen,
    )
    admin_token: str = setting(
        "",
        "bearer token the admin API requires (16-1024 printable ASCII characters, no "
        "spaces; shorter stops start-up); prefer "
        "admin_token_file (an environment variable or flag can be read by other users)",
        check=_check_admin_token,
        secret=True,
    )
    admin_token_file: str = setting(
        "",
        "file holding the admin API's bearer token (read once at start, whitespace trimmed)",
        check=_check_admin_token_file,
    )
    kafka_bootstrap: str = setting(
        "",
        "Kafka bootstrap servers (host:port[,host:port]) carrying invalidation events to "
        "and from every sidecar; empty = not used (purges reach other sidecars through the "
        "Redis generations only)",
        check=check_bootstrap,
    )
    kafka_topic: str = setting(
        "strata.invalidations", "Kafka topic of invalidation events", check=check_topic
    )
    kafka_topic_partitions: int = setting(
        1,
        "partitions of the invalidation topic when the sidecar creates it (at start, when "
        "it is missing); an existing topic is left as it is",
        parse=count,
        check=Range(1, 1000),
    )
    node_id: str = setting(
        "",
        "this sidecar's id on the invalidation topic (its offsets, and the origin of its "
        "events): stable across restarts, distinct per sidecar; empty = host name + a hash "
        "of listen",
        check=check_node_id,
    )
    kafka_dead_letter_topic: str = setting(
        "",
        "Kafka topic refused invalidation events are copied to; empty = none",
        check=check_dead_letter_topic,
    )
    kafka_fetch_wait_ms: int = setting(
        10,
        "longest a fetch of invalidation events waits on the broker: the latency of a purge "
        "on brokers that do not wake a waiting fetch, against broker CPU while idle",
        parse=milliseconds,
        check=Range(1, MINUTE_MS, "ms", zero="answer at once"),
    )
    kafka_outbox_max_events: int = setting(
        10_000,
        "invalidation events kept for publishing while the broker is unreachable; beyond "
        "it the oldest are dropped (counted, logged with the event)",
        parse=count,
        check=Range(1, 10_000_000),
    )

    analytics_topic: str = setting(
        "strata.access",
        "Kafka topic the plugins' sampled per-request cache events (analytics) are published "
        "on, created when missing; empty = analytics off (as without kafka_bootstrap)",
        check=_check_analytics_topic,
    )
    analytics_topic_partitions: int = setting(
        1,
        "partitions of the analytics topic when the sidecar creates it; an existing topic is "
        "left as it is",
        parse=count,
        check=Range(1, 1000),
    )
    analytics_queue_max_events: int = setting(
        50_000,
        "analytics events held for the broker (queued and in flight, at most 1KiB each on "
        "average); beyond it new events are dropped and counted (queue-full)",
        parse=count,
        check=Range(100, 10_000_000),
    )
    analytics_max_events_per_second: int = setting(
        20_000,
        "analytics events a sidecar checks and queues per second at most (all plugins "
        "together); beyond it the rest of a batch is dropped unread and counted "
        "(rate-limited), so analytics takes a bounded share of the sidecar's CPU",
        parse=count,
        check=Range(100, 1_000_000),
    )
    analytics_linger_ms: int = setting(
        100,
        "how long the analytics producer waits to fill a batch before sending it (librdkafka "
        "linger.ms): fewer, larger requests to the broker against event delay",
        parse=milliseconds,
        check=Range(1, 10_000, "ms", zero="send at once"),
    )

    def __post_init__(self) -> None:
        """Checks across settings (each setting's own check ran when it was read)."""
        if self.kafka_dead_letter_topic and self.kafka_dead_letter_topic == self.kafka_topic:
            raise ConfigError(
                "kafka_dead_letter_topic",
                f"is the invalidation topic itself ({self.kafka_topic!r}): refused events "
                "would be read again",
            )
        if self.analytics_topic and self.analytics_topic in {
            self.kafka_topic,
            self.kafka_dead_letter_topic,
        }:
            raise ConfigError(
                "analytics_topic",
                f"is an invalidation topic ({self.analytics_topic!r}): every sidecar would "
                "read analytics events as purges (and refuse them)",
            )

    def redacted(self) -> dict[str, Any]:
        """The settings as a dict, secrets (passwords in URLs/DSNs) masked."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.metadata["secret"] and isinstance(value, str):
                value = (MASK if value else "") if f.name in OPAQUE_SECRETS else redact(value)
            out[f.name] = value
        return out


SETTINGS: tuple[dataclasses.Field[Any], ...] = dataclasses.fields(SidecarConfig)
SETTING_NAMES = frozenset(f.name for f in SETTINGS)
