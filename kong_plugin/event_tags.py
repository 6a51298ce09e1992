"""The event tags of a stored entry: the plugin's side of the invalidation event scheme.

An invalidation event (``docs/invalidation-events.md``) names URLs, path prefixes and
route or service names; the sidecar turns them into tags and purges by tag. For an event
to reach an entry, the entry must carry the same tags, computed from the request that
stored it. The sidecar's ``sidecar.events.tagging`` holds the rules; the plugin cannot
import the sidecar (it runs in Kong's plugin server, with its own dependencies), so this
module is the plugin's copy of the entry side, and ``tests/unit/sidecar/events/
tag_vectors.json`` holds both copies to the same answers.

* The path is normalised exactly as the cache key's path component is
  (`kong_plugin.cache_key.normalize_path`: unreserved escapes decoded, other escapes
  upper-cased, dot-segments removed, repeated slashes kept), lower-cased when the route
  has ``ignore_uri_case``.
* ``url:<path>[?<query>]``: the query canonical -- ``&``-units, empty ones dropped,
  escapes normalised losslessly (`kong_plugin.query_key.normalize_escapes`), sorted,
  nothing decoded. No host, no consumer.
* ``path:<prefix>``: the path up to and including each of its first ``PREFIX_DEPTH + 1``
  slashes, plus the whole path when it does not end in ``/`` and has at most
  ``PREFIX_DEPTH`` slashes.
* ``route-name:<name>``, ``service:<name>`` for a route or service with a name.
* A URL or path tag longer than `MAX_TAG_CHARS` or not printable ASCII becomes
  ``url#``/``path#`` and the SHA-256 hex of the text after the colon (UTF-8).

The path and query are the request's as the client sent them, before the route's key
options (``ignore_query_params``, ``vary_query_params``) drop parameters.

Not guaranteed: a route or service name that cannot be a tag (not printable ASCII, or
longer than the sidecar's tag limit with its prefix -- Kong's names may be UTF-8) gives no
tag here (`name_tag` returns ``""``), so an event's ``flush`` of that name reaches no
entry; URL tags match one spelling of the query (see ``sidecar.events.tagging``).
"""

from __future__ import annotations

import hashlib
import re

from kong_plugin.cache_key import normalize_path
from kong_plugin.query_key import normalize_escapes

__all__ = [
    "MAX_TAG_CHARS",
    "PREFIX_DEPTH",
    "ROUTE_NAME_TAG",
    "SERVICE_TAG",
    "entry_tags",
    "name_tag",
    "path_tags",
    "url_tag",
]

URL_TAG = "url:"
URL_DIGEST_TAG = "url#"
PATH_TAG = "path:"
PATH_DIGEST_TAG = "path#"
ROUTE_NAME_TAG = "route-name:"
SERVICE_TAG = "service:"
#: Path tags reach this many segments deep (``/`` plus ``PREFIX_DEPTH`` more boundaries).
PREFIX_DEPTH = 8
#: The longest tag the sidecar accepts (its default ``max_tag_bytes``).
MAX_TAG_CHARS = 256

_PRINTABLE = re.compile(r"[\x21-\x7e]+")


def _fits(tag: str) -> bool:
    return len(tag) <= MAX_TAG_CHARS and _PRINTABLE.fullmatch(tag) is not None


def _tag_or_digest(kind: str, digest_kind: str, text: str) -> str:
    tag = kind + text
    if _fits(tag):
        return tag
    return digest_kind + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _canonical_query(query: str) -> str:
    return "&".join(sorted(normalize_escapes(unit) for unit in query.split("&") if unit))


def url_tag(normal_path: str, query: str) -> str:
    """The URL tag of an already normalised path and a raw query (no ``?``)."""
    canonical = _canonical_query(query) if query else ""
    text = f"{normal_path}?{canonical}" if canonical else normal_path
    return _tag_or_digest(URL_TAG, URL_DIGEST_TAG, text)


def path_tags(normal_path: str) -> list[str]:
    """The path tags of an already normalised path (one per segment boundary)."""
    tags: list[str] = []
    slash = normal_path.find("/")
    while slash >= 0 and len(tags) <= PREFIX_DEPTH:
        tags.append(_tag_or_digest(PATH_TAG, PATH_DIGEST_TAG, normal_path[: slash + 1]))
        slash = normal_path.find("/", slash + 1)
    if not normal_path.endswith("/") and normal_path.count("/") <= PREFIX_DEPTH:
        tags.append(_tag_or_digest(PATH_TAG, PATH_DIGEST_TAG, normal_path))
    return tags


def name_tag(kind: str, name: str) -> str:
    """``<kind><name>`` (`ROUTE_NAME_TAG` or `SERVICE_TAG`), or ``""`` when `name` is empty
    or the tag would not be a valid one."""
    if not name:
        return ""
    tag = kind + name
    return tag if _fits(tag) else ""


def entry_tags(
    path: str,
    query: str = "",
    *,
    fold_case: bool = False,
    route_name: str = "",
    service_name: str = "",
) -> tuple[str, ...]:
    """Every event tag of an entry stored for `path` and raw `query` (no ``?``), in the
    order of ``sidecar.events.tagging.entry_tags``, duplicates removed; `fold_case` is the
    route's ``ignore_uri_case``. An empty or unusable name gives no tag (`name_tag`)."""
    normal = normalize_path(path, ignore_case=fold_case)
    tags = [url_tag(normal, query), *path_tags(normal)]
    for kind, name in ((ROUTE_NAME_TAG, route_name), (SERVICE_TAG, service_name)):
        tag = name_tag(kind, name)
        if tag:
            tags.append(tag)
    return tuple(dict.fromkeys(tags))
