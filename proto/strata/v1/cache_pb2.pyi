from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Outcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OUTCOME_UNSPECIFIED: _ClassVar[Outcome]
    OUTCOME_HIT: _ClassVar[Outcome]
    OUTCOME_STALE: _ClassVar[Outcome]
    OUTCOME_MISS: _ClassVar[Outcome]

class StoreResult(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STORE_RESULT_UNSPECIFIED: _ClassVar[StoreResult]
    STORE_RESULT_STORED: _ClassVar[StoreResult]
    STORE_RESULT_NOT_ADMITTED: _ClassVar[StoreResult]
    STORE_RESULT_TOO_LARGE: _ClassVar[StoreResult]
    STORE_RESULT_EXPIRED: _ClassVar[StoreResult]
OUTCOME_UNSPECIFIED: Outcome
OUTCOME_HIT: Outcome
OUTCOME_STALE: Outcome
OUTCOME_MISS: Outcome
STORE_RESULT_UNSPECIFIED: StoreResult
STORE_RESULT_STORED: StoreResult
STORE_RESULT_NOT_ADMITTED: StoreResult
STORE_RESULT_TOO_LARGE: StoreResult
STORE_RESULT_EXPIRED: StoreResult

class Header(_message.Message):
    __slots__ = ("name", "value")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    name: bytes
    value: bytes
    def __init__(self, name: _Optional[bytes] = ..., value: _Optional[bytes] = ...) -> None: ...

class Entry(_message.Message):
    __slots__ = ("format_version", "status", "headers", "body", "stored_at_ms", "ttl_ms", "stale_while_revalidate_ms", "stale_if_error_ms", "tags", "vary", "storage_ttl_ms")
    FORMAT_VERSION_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    HEADERS_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    STORED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    TTL_MS_FIELD_NUMBER: _ClassVar[int]
    STALE_WHILE_REVALIDATE_MS_FIELD_NUMBER: _ClassVar[int]
    STALE_IF_ERROR_MS_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    VARY_FIELD_NUMBER: _ClassVar[int]
    STORAGE_TTL_MS_FIELD_NUMBER: _ClassVar[int]
    format_version: int
    status: int
    headers: _containers.RepeatedCompositeFieldContainer[Header]
    body: bytes
    stored_at_ms: int
    ttl_ms: int
    stale_while_revalidate_ms: int
    stale_if_error_ms: int
    tags: _containers.RepeatedScalarFieldContainer[str]
    vary: _containers.RepeatedScalarFieldContainer[str]
    storage_ttl_ms: int
    def __init__(self, format_version: _Optional[int] = ..., status: _Optional[int] = ..., headers: _Optional[_Iterable[_Union[Header, _Mapping]]] = ..., body: _Optional[bytes] = ..., stored_at_ms: _Optional[int] = ..., ttl_ms: _Optional[int] = ..., stale_while_revalidate_ms: _Optional[int] = ..., stale_if_error_ms: _Optional[int] = ..., tags: _Optional[_Iterable[str]] = ..., vary: _Optional[_Iterable[str]] = ..., storage_ttl_ms: _Optional[int] = ...) -> None: ...

class LookupRequest(_message.Message):
    __slots__ = ("key", "coalesce_wait_ms", "request_headers")
    KEY_FIELD_NUMBER: _ClassVar[int]
    COALESCE_WAIT_MS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_HEADERS_FIELD_NUMBER: _ClassVar[int]
    key: bytes
    coalesce_wait_ms: int
    request_headers: _containers.RepeatedCompositeFieldContainer[Header]
    def __init__(self, key: _Optional[bytes] = ..., coalesce_wait_ms: _Optional[int] = ..., request_headers: _Optional[_Iterable[_Union[Header, _Mapping]]] = ...) -> None: ...

class LookupResponse(_message.Message):
    __slots__ = ("outcome", "entry", "age_ms", "tier", "fill_lease", "coalesced", "now_ms")
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    ENTRY_FIELD_NUMBER: _ClassVar[int]
    AGE_MS_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    FILL_LEASE_FIELD_NUMBER: _ClassVar[int]
    COALESCED_FIELD_NUMBER: _ClassVar[int]
    NOW_MS_FIELD_NUMBER: _ClassVar[int]
    outcome: Outcome
    entry: Entry
    age_ms: int
    tier: str
    fill_lease: bool
    coalesced: bool
    now_ms: int
    def __init__(self, outcome: _Optional[_Union[Outcome, str]] = ..., entry: _Optional[_Union[Entry, _Mapping]] = ..., age_ms: _Optional[int] = ..., tier: _Optional[str] = ..., fill_lease: _Optional[bool] = ..., coalesced: _Optional[bool] = ..., now_ms: _Optional[int] = ...) -> None: ...

class StoreRequest(_message.Message):
    __slots__ = ("key", "entry", "request_headers", "route")
    KEY_FIELD_NUMBER: _ClassVar[int]
    ENTRY_FIELD_NUMBER: _ClassVar[int]
    REQUEST_HEADERS_FIELD_NUMBER: _ClassVar[int]
    ROUTE_FIELD_NUMBER: _ClassVar[int]
    key: bytes
    entry: Entry
    request_headers: _containers.RepeatedCompositeFieldContainer[Header]
    route: str
    def __init__(self, key: _Optional[bytes] = ..., entry: _Optional[_Union[Entry, _Mapping]] = ..., request_headers: _Optional[_Iterable[_Union[Header, _Mapping]]] = ..., route: _Optional[str] = ...) -> None: ...

class StoreResponse(_message.Message):
    __slots__ = ("result", "waiters_released")
    RESULT_FIELD_NUMBER: _ClassVar[int]
    WAITERS_RELEASED_FIELD_NUMBER: _ClassVar[int]
    result: StoreResult
    waiters_released: int
    def __init__(self, result: _Optional[_Union[StoreResult, str]] = ..., waiters_released: _Optional[int] = ...) -> None: ...

class ReleaseRequest(_message.Message):
    __slots__ = ("key",)
    KEY_FIELD_NUMBER: _ClassVar[int]
    key: bytes
    def __init__(self, key: _Optional[bytes] = ...) -> None: ...

class ReleaseResponse(_message.Message):
    __slots__ = ("waiters_released",)
    WAITERS_RELEASED_FIELD_NUMBER: _ClassVar[int]
    waiters_released: int
    def __init__(self, waiters_released: _Optional[int] = ...) -> None: ...

class InvalidateRequest(_message.Message):
    __slots__ = ("key", "prefix", "tag", "route")
    KEY_FIELD_NUMBER: _ClassVar[int]
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    TAG_FIELD_NUMBER: _ClassVar[int]
    ROUTE_FIELD_NUMBER: _ClassVar[int]
    key: bytes
    prefix: bytes
    tag: str
    route: str
    def __init__(self, key: _Optional[bytes] = ..., prefix: _Optional[bytes] = ..., tag: _Optional[str] = ..., route: _Optional[str] = ...) -> None: ...

class InvalidateResponse(_message.Message):
    __slots__ = ("dropped",)
    DROPPED_FIELD_NUMBER: _ClassVar[int]
    dropped: int
    def __init__(self, dropped: _Optional[int] = ...) -> None: ...

class StatsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class TierStats(_message.Message):
    __slots__ = ("name", "entries", "bytes", "max_bytes", "hits", "misses", "evictions", "admission_rejections")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_BYTES_FIELD_NUMBER: _ClassVar[int]
    HITS_FIELD_NUMBER: _ClassVar[int]
    MISSES_FIELD_NUMBER: _ClassVar[int]
    EVICTIONS_FIELD_NUMBER: _ClassVar[int]
    ADMISSION_REJECTIONS_FIELD_NUMBER: _ClassVar[int]
    name: str
    entries: int
    bytes: int
    max_bytes: int
    hits: int
    misses: int
    evictions: int
    admission_rejections: int
    def __init__(self, name: _Optional[str] = ..., entries: _Optional[int] = ..., bytes: _Optional[int] = ..., max_bytes: _Optional[int] = ..., hits: _Optional[int] = ..., misses: _Optional[int] = ..., evictions: _Optional[int] = ..., admission_rejections: _Optional[int] = ...) -> None: ...

class StatsResponse(_message.Message):
    __slots__ = ("tiers", "lookups", "hits", "stale_hits", "misses", "stores", "invalidations", "coalesced", "rejected_requests", "version")
    TIERS_FIELD_NUMBER: _ClassVar[int]
    LOOKUPS_FIELD_NUMBER: _ClassVar[int]
    HITS_FIELD_NUMBER: _ClassVar[int]
    STALE_HITS_FIELD_NUMBER: _ClassVar[int]
    MISSES_FIELD_NUMBER: _ClassVar[int]
    STORES_FIELD_NUMBER: _ClassVar[int]
    INVALIDATIONS_FIELD_NUMBER: _ClassVar[int]
    COALESCED_FIELD_NUMBER: _ClassVar[int]
    REJECTED_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    tiers: _containers.RepeatedCompositeFieldContainer[TierStats]
    lookups: int
    hits: int
    stale_hits: int
    misses: int
    stores: int
    invalidations: int
    coalesced: int
    rejected_requests: int
    version: str
    def __init__(self, tiers: _Optional[_Iterable[_Union[TierStats, _Mapping]]] = ..., lookups: _Optional[int] = ..., hits: _Optional[int] = ..., stale_hits: _Optional[int] = ..., misses: _Optional[int] = ..., stores: _Optional[int] = ..., invalidations: _Optional[int] = ..., coalesced: _Optional[int] = ..., rejected_requests: _Optional[int] = ..., version: _Optional[str] = ...) -> None: ...

class CallError(_message.Message):
    __slots__ = ("code", "message")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class Call(_message.Message):
    __slots__ = ("id", "lookup", "store", "invalidate", "release")
    ID_FIELD_NUMBER: _ClassVar[int]
    LOOKUP_FIELD_NUMBER: _ClassVar[int]
    STORE_FIELD_NUMBER: _ClassVar[int]
    INVALIDATE_FIELD_NUMBER: _ClassVar[int]
    RELEASE_FIELD_NUMBER: _ClassVar[int]
    id: int
    lookup: LookupRequest
    store: StoreRequest
    invalidate: InvalidateRequest
    release: ReleaseRequest
    def __init__(self, id: _Optional[int] = ..., lookup: _Optional[_Union[LookupRequest, _Mapping]] = ..., store: _Optional[_Union[StoreRequest, _Mapping]] = ..., invalidate: _Optional[_Union[InvalidateRequest, _Mapping]] = ..., release: _Optional[_Union[ReleaseRequest, _Mapping]] = ...) -> None: ...

class Reply(_message.Message):
    __slots__ = ("id", "lookup", "store", "invalidate", "error", "release")
    ID_FIELD_NUMBER: _ClassVar[int]
    LOOKUP_FIELD_NUMBER: _ClassVar[int]
    STORE_FIELD_NUMBER: _ClassVar[int]
    INVALIDATE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    RELEASE_FIELD_NUMBER: _ClassVar[int]
    id: int
    lookup: LookupResponse
    store: StoreResponse
    invalidate: InvalidateResponse
    error: CallError
    release: ReleaseResponse
    def __init__(self, id: _Optional[int] = ..., lookup: _Optional[_Union[LookupResponse, _Mapping]] = ..., store: _Optional[_Union[StoreResponse, _Mapping]] = ..., invalidate: _Optional[_Union[InvalidateResponse, _Mapping]] = ..., error: _Optional[_Union[CallError, _Mapping]] = ..., release: _Optional[_Union[ReleaseResponse, _Mapping]] = ...) -> None: ...

class ExchangeRequest(_message.Message):
    __slots__ = ("calls",)
    CALLS_FIELD_NUMBER: _ClassVar[int]
    calls: _containers.RepeatedCompositeFieldContainer[Call]
    def __init__(self, calls: _Optional[_Iterable[_Union[Call, _Mapping]]] = ...) -> None: ...

class ExchangeResponse(_message.Message):
    __slots__ = ("replies",)
    REPLIES_FIELD_NUMBER: _ClassVar[int]
    replies: _containers.RepeatedCompositeFieldContainer[Reply]
    def __init__(self, replies: _Optional[_Iterable[_Union[Reply, _Mapping]]] = ...) -> None: ...

class WatchRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class WatchHello(_message.Message):
    __slots__ = ("instance_id",)
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    instance_id: str
    def __init__(self, instance_id: _Optional[str] = ...) -> None: ...

class WatchChanged(_message.Message):
    __slots__ = ("keys", "prefixes", "tags")
    KEYS_FIELD_NUMBER: _ClassVar[int]
    PREFIXES_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    keys: _containers.RepeatedScalarFieldContainer[bytes]
    prefixes: _containers.RepeatedScalarFieldContainer[bytes]
    tags: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, keys: _Optional[_Iterable[bytes]] = ..., prefixes: _Optional[_Iterable[bytes]] = ..., tags: _Optional[_Iterable[str]] = ...) -> None: ...

class WatchFlush(_message.Message):
    __slots__ = ("reason",)
    REASON_FIELD_NUMBER: _ClassVar[int]
    reason: str
    def __init__(self, reason: _Optional[str] = ...) -> None: ...

class WatchEvent(_message.Message):
    __slots__ = ("seq", "hello", "changed", "flush")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    HELLO_FIELD_NUMBER: _ClassVar[int]
    CHANGED_FIELD_NUMBER: _ClassVar[int]
    FLUSH_FIELD_NUMBER: _ClassVar[int]
    seq: int
    hello: WatchHello
    changed: WatchChanged
    flush: WatchFlush
    def __init__(self, seq: _Optional[int] = ..., hello: _Optional[_Union[WatchHello, _Mapping]] = ..., changed: _Optional[_Union[WatchChanged, _Mapping]] = ..., flush: _Optional[_Union[WatchFlush, _Mapping]] = ...) -> None: ...

class AccessEvent(_message.Message):
    __slots__ = ("time_ms", "route_id", "service_id", "consumer_id", "method", "status", "cache_result", "cache_detail", "tier", "bytes", "latency_ms", "key_hash", "phase")
    TIME_MS_FIELD_NUMBER: _ClassVar[int]
    ROUTE_ID_FIELD_NUMBER: _ClassVar[int]
    SERVICE_ID_FIELD_NUMBER: _ClassVar[int]
    CONSUMER_ID_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    CACHE_RESULT_FIELD_NUMBER: _ClassVar[int]
    CACHE_DETAIL_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    KEY_HASH_FIELD_NUMBER: _ClassVar[int]
    PHASE_FIELD_NUMBER: _ClassVar[int]
    time_ms: int
    route_id: str
    service_id: str
    consumer_id: str
    method: str
    status: int
    cache_result: str
    cache_detail: str
    tier: str
    bytes: int
    latency_ms: float
    key_hash: str
    phase: str
    def __init__(self, time_ms: _Optional[int] = ..., route_id: _Optional[str] = ..., service_id: _Optional[str] = ..., consumer_id: _Optional[str] = ..., method: _Optional[str] = ..., status: _Optional[int] = ..., cache_result: _Optional[str] = ..., cache_detail: _Optional[str] = ..., tier: _Optional[str] = ..., bytes: _Optional[int] = ..., latency_ms: _Optional[float] = ..., key_hash: _Optional[str] = ..., phase: _Optional[str] = ...) -> None: ...

class AccessBatch(_message.Message):
    __slots__ = ("events",)
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[AccessEvent]
    def __init__(self, events: _Optional[_Iterable[_Union[AccessEvent, _Mapping]]] = ...) -> None: ...

class AccessAck(_message.Message):
    __slots__ = ("accepted", "rejected", "dropped", "disabled", "retry_after_ms")
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    DROPPED_FIELD_NUMBER: _ClassVar[int]
    DISABLED_FIELD_NUMBER: _ClassVar[int]
    RETRY_AFTER_MS_FIELD_NUMBER: _ClassVar[int]
    accepted: int
    rejected: int
    dropped: int
    disabled: bool
    retry_after_ms: int
    def __init__(self, accepted: _Optional[int] = ..., rejected: _Optional[int] = ..., dropped: _Optional[int] = ..., disabled: _Optional[bool] = ..., retry_after_ms: _Optional[int] = ...) -> None: ...
