"""HTTP header fields as the plugin sees them, and which of them a cache keeps or replays.

Kong's PDK hands headers over as a map ``name -> str | list[str]`` (a list when the field
line is repeated), names lower-cased. `Headers` is an immutable, case-insensitive,
multi-valued view of such a map; build it once per request or response with `Headers.of`
and pass it to every function here (they also accept the raw map).

What is removed, and why:

* hop-by-hop fields (RFC 9110 §7.6.1): ``Connection`` and every field it names,
  ``Keep-Alive``, ``Proxy-*`` (``Proxy-Authenticate``, ``Proxy-Authorization``,
  ``Proxy-Connection``), ``TE``, ``Trailer`` (and Kong's spelling ``Trailers``),
  ``Transfer-Encoding``, ``Upgrade`` -- never stored, never replayed;
* ``Set-Cookie``/``Set-Cookie2`` -- a response that carries one is stored only with
  ``cache_set_cookie`` (see `cacheability`), and then without them: this filter drops the
  lines, so they are neither stored nor replayed (RFC 9111 §7.3 lets a cache reuse such a
  response; keeping one client's cookie out of it departs from §3.1 on purpose);
* ``Age`` -- recomputed on every hit (RFC 9111 §5.1);
* ``Content-Length`` -- Kong sets it from the body it sends;
* the cache's own diagnostics (``X-Cache-Status``, ``X-Cache-Key``) -- set fresh per hit;
* rate-limit counters: any name containing ``ratelimit`` (``X-RateLimit-Remaining-Minute``,
  ``RateLimit-Remaining``, ``RateLimit-Policy`` ...). Kong's proxy-cache removes names
  matching ``ratelimit-remaining`` on a hit (anchors §1.5) because the rate-limiting plugin
  (priority 910) has already set the current values; Strata drops the whole family, which
  that plugin rewrites on every request anyway;
* ``X-Kong-*`` -- Kong adds its own latency/request-id headers to every response.

Not guaranteed: field order across *different* names follows the input map's order (Kong's
maps are unordered Lua tables, so only the order of repeated lines of one name is
meaningful). Values are not validated or trimmed: they are passed through as given.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping, Sequence
from typing import TypeAlias

HeaderValue: TypeAlias = str | Sequence[str]
RawHeaders: TypeAlias = Mapping[str, HeaderValue]
HeaderInput: TypeAlias = "Headers | RawHeaders | None"

#: RFC 9110 §7.6.1 hop-by-hop fields, plus ``proxy-connection`` and Kong's ``trailers``.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)

#: Fields never written to the cache and never replayed from it (besides hop-by-hop ones).
NEVER_STORED = frozenset(
    {"set-cookie", "set-cookie2", "age", "content-length", "x-cache-status", "x-cache-key"}
)


class Headers:
    """An immutable, case-insensitive, multi-valued header map.

    Names are lower-cased; each name maps to the tuple of its field line values in the
    order received. A value given as one string stays one line even if it contains commas
    (``combined`` joins lines with ``", "`` as RFC 9110 §5.3 allows for list fields).
    """

    __slots__ = ("_fields",)

    def __init__(self, fields: Mapping[str, tuple[str, ...]] | None = None) -> None:
        """Wrap an already normalised mapping (lower-case names, tuple values)."""
        self._fields: dict[str, tuple[str, ...]] = dict(fields) if fields else {}

    @classmethod
    def of(cls, headers: HeaderInput) -> Headers:
        """Normalise a Kong header map (or return `headers` itself if already `Headers`)."""
        if isinstance(headers, Headers):
            return headers
        fields: dict[str, tuple[str, ...]] = {}
        if not headers:
            return cls(fields)
        for name, value in headers.items():
            lname = str(name).lower()
            if isinstance(value, str):
                values: tuple[str, ...] = (value,)
            elif isinstance(value, (list, tuple)):
                values = tuple(v if isinstance(v, str) else str(v) for v in value)
            else:  # numbers or booleans from a loosely typed caller
                values = (str(value),)
            if not values:
                continue
            previous = fields.get(lname)
            fields[lname] = previous + values if previous else values
        return cls(fields)

    def get(self, name: str) -> str | None:
        """The first line's value of `name`, or None if absent."""
        values = self._fields.get(name.lower())
        return values[0] if values else None

    def get_all(self, name: str) -> tuple[str, ...]:
        """Every line's value of `name`, in order; () if absent."""
        return self._fields.get(name.lower(), ())

    def combined(self, name: str) -> str | None:
        """All lines of `name` joined with ``", "`` (RFC 9110 §5.3), or None if absent."""
        values = self._fields.get(name.lower())
        if not values:
            return None
        return values[0] if len(values) == 1 else ", ".join(values)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._fields

    def __iter__(self) -> Iterator[str]:
        return iter(self._fields)

    def __len__(self) -> int:
        return len(self._fields)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Headers) and self._fields == other._fields

    def __hash__(self) -> int:
        return hash(tuple(self._fields.items()))

    def __repr__(self) -> str:
        return f"Headers({self._fields!r})"

    def items(self) -> Iterator[tuple[str, tuple[str, ...]]]:
        """(name, values) pairs in insertion order."""
        return iter(self._fields.items())

    def lines(self) -> Iterator[tuple[str, str]]:
        """One (name, value) pair per field line: the shape of the proto's `Header` list."""
        for name, values in self._fields.items():
            for value in values:
                yield name, value

    def without(self, names: Collection[str]) -> Headers:
        """A copy without the (lower-case) `names`."""
        return Headers({k: v for k, v in self._fields.items() if k not in names})

    def with_values(self, name: str, values: Sequence[str]) -> Headers:
        """A copy in which `name` has exactly `values` (kept in place if already present)."""
        fields = dict(self._fields)
        fields[name.lower()] = tuple(values)
        return Headers(fields)

    def to_kong(self) -> dict[str, str | list[str]]:
        """The map shape `kong.response.exit` takes: a string, or a list for repeats."""
        return {k: (v[0] if len(v) == 1 else list(v)) for k, v in self._fields.items()}


#: The most header lines Kong's ``get_headers(max)`` returns (its upper bound for ``max``);
#: without an argument it returns 100. More lines than asked for are dropped silently (the
#: ``"truncated"`` error does not cross the plugin-server protocol).
MAX_HEADER_LINES = 1000


def kong_line_count(headers: RawHeaders | None) -> int:
    """How many header lines a Kong header map holds (a list value is one line per item)."""
    if not headers:
        return 0
    return sum(len(v) if isinstance(v, (list, tuple)) else 1 for v in headers.values())


def header_lines(headers: Mapping[str, object]) -> list[tuple[bytes, bytes]]:
    """Kong's header map (name -> str | list[str]) as ordered byte lines: names in
    latin-1, values in UTF-8 (a value that came in as undecodable bytes goes back as them)."""
    out: list[tuple[bytes, bytes]] = []
    for name, value in headers.items():
        n = name.encode("latin-1", "replace")
        if isinstance(value, (list, tuple)):
            out.extend((n, str(v).encode("utf-8", "surrogateescape")) for v in value)
        else:
            out.append((n, str(value).encode("utf-8", "surrogateescape")))
    return out


def split_list(value: str) -> list[str]:
    """Split a comma-separated list field (RFC 9110 §5.6.1), dropping empty elements."""
    return [item for item in (part.strip() for part in value.split(",")) if item]


def connection_listed(headers: HeaderInput) -> frozenset[str]:
    """The (lower-case) field names listed in ``Connection``: hop-by-hop for this hop."""
    h = Headers.of(headers)
    names: set[str] = set()
    for line in h.get_all("connection"):
        names.update(item.lower() for item in split_list(line))
    return frozenset(names)


def is_rate_limit_header(name: str) -> bool:
    """True for rate-limit counters that must not be replayed from a stored response."""
    return "ratelimit" in name.lower()


def _droppable(name: str, listed: frozenset[str]) -> bool:
    return (
        name in HOP_BY_HOP
        or name in NEVER_STORED
        or name in listed
        or name.startswith(("proxy-", "x-kong-"))
        or "ratelimit" in name
    )


def strip_hop_by_hop(headers: HeaderInput) -> Headers:
    """Remove hop-by-hop fields, including those named by ``Connection`` (RFC 9110 §7.6.1)."""
    h = Headers.of(headers)
    listed = connection_listed(h)
    return Headers(
        {
            k: v
            for k, v in h.items()
            if k not in HOP_BY_HOP and k not in listed and not k.startswith("proxy-")
        }
    )


def storable_headers(headers: HeaderInput, *, strip: Collection[str] = ()) -> Headers:
    """The response header fields worth storing with an entry.

    Drops hop-by-hop fields, `NEVER_STORED`, ``Proxy-*``, ``X-Kong-*``, rate-limit
    counters, and the extra lower-case names in `strip` (for example the fields a
    qualified ``private="..."`` directive names, RFC 9111 §5.2.2.7).
    """
    h = Headers.of(headers)
    listed = connection_listed(h)
    return Headers({k: v for k, v in h.items() if not _droppable(k, listed) and k not in strip})


def replay_headers(stored: HeaderInput) -> Headers:
    """The stored fields to send on a hit (the caller then adds Age and X-Cache-*).

    Applies the same filter as `storable_headers` again, so entries written by an older
    or foreign writer cannot replay hop-by-hop or rate-limit fields.
    """
    return storable_headers(stored)
