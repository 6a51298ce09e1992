"""The tag scheme: which tags an entry is stamped with, so that an event can reach it.

Events name URLs, path prefixes, tags and route or service names; the engine purges by
tag. So the plugin stamps every stored entry with tags derived from its request
(`entry_tags`) and an event's items are turned into the same tags (`url_event_tags`,
`prefix_event_tags`, `flush_tags`). Both sides must compute them identically: the plugin
cannot import the sidecar, so it carries its own copy of these rules and the test vectors
in ``tests/unit/sidecar/events/tag_vectors.json`` hold both to them.

* **Paths** are normalised as the cache key's path component is: percent-escapes of
  unreserved characters decoded and other escapes upper-cased (RFC 3986 §6.2.2.1-2; when
  a ``%`` starts no escape, escapes are only upper-cased), dot-segments removed (§5.2.4),
  repeated slashes kept, letter case kept -- except that the plugin stamps the path
  lower-cased on a route with ``ignore_uri_case`` (the path as it enters that route's
  key), and an event's path is therefore also purged lower-cased (`url_event_tags`).
* **URL tag** ``url:<path>[?<query>]``: the normalised path, then ``?`` and the query
  when it is not empty. The query is canonical: split on ``&``, empty units dropped,
  escapes normalised as above, units sorted; nothing is decoded (``+`` and ``%20`` stay
  apart). No host, no consumer: one URL tag reaches every host's and every consumer's
  entries of that URL.
* **Path tags** ``path:<prefix>``: one per segment boundary of the normalised path -- the
  text up to and including each of its first ``PREFIX_DEPTH + 1`` slashes (``/``,
  ``/products/``, ``/products/42/``...) -- plus the whole path when it does not end in a
  slash and has at most ``PREFIX_DEPTH`` slashes. At most ``PREFIX_DEPTH + 2`` tags.
* **Route and service**: ``route-name:<name>`` and ``service:<name>`` when the route or
  service has a name.
* A tag that would be longer than ``MAX_TAG_CHARS`` or not printable ASCII (a long or
  non-ASCII path) becomes ``url#<sha256 hex>`` or ``path#<sha256 hex>`` of the text after
  the colon, encoded as UTF-8.

Not guaranteed: a URL tag matches one spelling of the query. A route that drops query
parameters from its key (``ignore_query_params``, ``vary_query_params``) shares an entry
between URLs that differ in those parameters, and the entry carries the URL tag of the
request that stored it; use a prefix equal to the path to purge every query of it. A
prefix deeper than ``PREFIX_DEPTH`` segments purges its ancestor at that depth (more than
asked, never less). Hash collisions of SHA-256 are not considered.
"""

from __future__ import annotations

import hashlib
import re

__all__ = [
    "MAX_TAG_CHARS",
    "PATH_DIGEST_TAG",
    "PATH_TAG",
    "PREFIX_DEPTH",
    "ROUTE_NAME_TAG",
    "SERVICE_TAG",
    "URL_DIGEST_TAG",
    "URL_TAG",
    "canonical_query",
    "entry_tags",
    "flush_tags",
    "normalize_escapes",
    "normalize_path",
    "path_tags",
    "prefix_event_tags",
    "url_event_tags",
    "url_tag",
]

URL_TAG = "url:"
URL_DIGEST_TAG = "url#"
PATH_TAG = "path:"
PATH_DIGEST_TAG = "path#"
ROUTE_NAME_TAG = "route-name:"
SERVICE_TAG = "service:"
#: Segments below which a prefix is matched exactly (deeper prefixes widen to this depth).
PREFIX_DEPTH = 8
#: Tags are 1..MAX_TAG_CHARS printable ASCII characters (the sidecar's default tag limit).
MAX_TAG_CHARS = 256

_TAG_TEXT = re.compile(r"[\x21-\x7e]+")
_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def _upper_escape(match: re.Match[str]) -> str:
    return "%" + match.group(1).upper()


def _normal_escape(match: re.Match[str]) -> str:
    char = chr(int(match.group(1), 16))
    return char if char in _UNRESERVED else "%" + match.group(1).upper()


def normalize_escapes(text: str) -> str:
    """Escapes of unreserved characters decoded, the others upper-cased; when some ``%``
    starts no escape, escapes are only upper-cased (decoding ``%41`` in ``%2%41`` would
    forge ``%2A``)."""
    if "%" not in text:
        return text
    if len(_ESCAPE.findall(text)) != text.count("%"):
        return _ESCAPE.sub(_upper_escape, text)
    return _ESCAPE.sub(_normal_escape, text)


def _remove_dot_segments(path: str) -> str:
    """RFC 3986 §5.2.4 for a path starting with ``/``."""
    kept: list[str] = []
    segments = path.split("/")[1:]
    for i, segment in enumerate(segments):
        last = i == len(segments) - 1
        if segment == "..":
            if kept:
                kept.pop()
        elif segment != ".":
            kept.append(segment)
            continue
        if last:
            kept.append("")
    return "/" + "/".join(kept)


def normalize_path(path: str, *, fold_case: bool = False) -> str:
    """`path` as it enters a tag (see the module docstring); a missing leading ``/`` is
    added."""
    if not path.startswith("/"):
        path = "/" + path
    path = normalize_escapes(path)
    if "/." in path:
        path = _remove_dot_segments(path)
    return path.lower() if fold_case else path


def canonical_query(query: str) -> str:
    """`query` (without ``?``) split on ``&``, empty units dropped, escapes normalised,
    units sorted, joined with ``&``."""
    units = sorted(normalize_escapes(unit) for unit in query.split("&") if unit)
    return "&".join(units)


def _tag(prefix: str, digest_prefix: str, text: str) -> str:
    tag = prefix + text
    if len(tag) <= MAX_TAG_CHARS and _TAG_TEXT.fullmatch(tag):
        return tag
    return digest_prefix + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def url_tag(path: str, query: str = "", *, fold_case: bool = False) -> str:
    """The URL tag of `path` with raw `query` (no ``?``)."""
    target = normalize_path(path, fold_case=fold_case)
    canonical = canonical_query(query)
    if canonical:
        target += "?" + canonical
    return _tag(URL_TAG, URL_DIGEST_TAG, target)


def _path_tag(prefix: str) -> str:
    return _tag(PATH_TAG, PATH_DIGEST_TAG, prefix)


def _through_slash(path: str, count: int) -> str:
    """`path` up to and including its `count`-th slash (all of it when it has fewer)."""
    end = -1
    for _ in range(count):
        end = path.find("/", end + 1)
        if end < 0:
            return path
    return path[: end + 1]


def path_tags(path: str, *, fold_case: bool = False) -> tuple[str, ...]:
    """The path tags an entry of `path` is stamped with (see the module docstring)."""
    normal = normalize_path(path, fold_case=fold_case)
    prefixes: list[str] = []
    end = -1
    for _ in range(PREFIX_DEPTH + 1):
        end = normal.find("/", end + 1)
        if end < 0:
            break
        prefixes.append(normal[: end + 1])
    if not normal.endswith("/") and normal.count("/") <= PREFIX_DEPTH:
        prefixes.append(normal)
    return tuple(_path_tag(p) for p in prefixes)


def _unique(tags: list[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(tags))


def entry_tags(
    path: str,
    query: str = "",
    *,
    fold_case: bool = False,
    route_name: str = "",
    service_name: str = "",
) -> tuple[str, ...]:
    """Every scheme tag of an entry stored for `path` + `query` (an empty name: none).

    `fold_case` is the route's ``ignore_uri_case``.
    """
    tags = [url_tag(path, query, fold_case=fold_case), *path_tags(path, fold_case=fold_case)]
    if route_name:
        tags.append(ROUTE_NAME_TAG + route_name)
    if service_name:
        tags.append(SERVICE_TAG + service_name)
    return _unique(tags)


def url_event_tags(url: str) -> tuple[str, ...]:
    """The tags an event's URL (``/path[?query]``) purges: its URL tag as written and with
    the path lower-cased (for routes with ``ignore_uri_case``), one when they are equal."""
    path, _, query = url.partition("?")
    return _unique([url_tag(path, query), url_tag(path, query, fold_case=True)])


def _prefix_tags(normal: str) -> list[str]:
    """Path tags that reach every entry whose path is `normal` or under it at a segment
    boundary; widened to an ancestor when `normal` is deeper than `PREFIX_DEPTH`."""
    base = normal if normal.endswith("/") else normal + "/"
    widest = _through_slash(base, PREFIX_DEPTH + 1)
    tags = [_path_tag(widest)]
    if widest == base and not normal.endswith("/"):
        tags.append(_path_tag(normal))
    return tags


def prefix_event_tags(prefix: str) -> tuple[str, ...]:
    """The tags an event's path prefix purges: entries whose normalised path equals the
    prefix or continues it after a slash (``/products`` reaches ``/products`` and
    ``/products/42``, not ``/productsX``; ``/products/`` reaches ``/products/42`` and
    ``/products/``, not ``/products``), in the case written and lower-cased."""
    exact = _prefix_tags(normalize_path(prefix))
    folded = _prefix_tags(normalize_path(prefix, fold_case=True))
    return _unique(exact + folded)


def flush_tags(name: str) -> tuple[str, ...]:
    """The tags of a route or a service named `name` (both: the event does not say
    which)."""
    return (ROUTE_NAME_TAG + name, SERVICE_TAG + name)
