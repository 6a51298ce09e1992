"""Tags: what an entry is filed under, and what a write invalidates (RFC 9111 §4.4).

Every invalidation is expressed as a *tag*, because keys are digests and the sidecar
purges by exact key, key prefix or tag:

* a path tag, ``uri:<host><normalised path>`` (`uri_tag`), attached to every entry stored
  while ``invalidate_on_write`` is on; it covers every query string, consumer and variant
  of that path (RFC 9111 §4.4 asks for the target URI; invalidating more is allowed);
* the route's static ``tags``;
* tags the upstream names in ``tag_headers``: ``Surrogate-Key`` (and any header whose name
  contains "surrogate") is space-separated, every other header comma-separated;
* with ``event_tags`` on, the tags an invalidation event's URLs, prefixes and flushes
  reach (`kong_plugin.event_tags`: ``url:``, ``path:``, ``route-name:``, ``service:``);
  they come right after the path tag, so the plugin's own tags are never the ones cut.

`entry_tags` gives the tags to store an entry with; `invalidation_targets` the tags to
purge after a write: for an unsafe method (not GET/HEAD/OPTIONS/TRACE, and not a method
listed in ``request_method``, which Kong-style configs use for cacheable POSTs) with a
2xx/3xx status: the target path, ``Location`` and ``Content-Location`` when they resolve
to the same host (§4.4: never another host), the response's tag headers, and the static
``tags`` (a write through this route purges everything filed under them).

The sidecar accepts tags of 1-256 printable ASCII characters without spaces, at most 256
per entry: a longer or non-ASCII path tag is replaced by ``uri#<sha256 hex>`` (event tags
by ``url#``/``path#``); other tags that do not fit, or beyond the 256th (the path and event
tags take at most 13, static tags at most 64, so only a response's tag headers can reach
it), are dropped and reported in `Tags.dropped` -- the handler then does not store the
entry, since it could not be purged by the dropped tag.

Not guaranteed: writes are seen only where this plugin runs (put it on the service, not
only on the GET route); the scheme is not compared (same host = same origin); a path tag
is per ``ignore_uri_case`` setting of the route that stored the entry.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

from kong_plugin.cache_key import normalize_path
from kong_plugin.config import PluginConfig
from kong_plugin.headers import HeaderInput, Headers

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
MAX_TAGS = 256
MAX_TAG_BYTES = 256
_TAG_RE = re.compile(r"[\x21-\x7e]+")


@dataclass(frozen=True, slots=True)
class Tags:
    """Tags in a stable order (duplicates removed) and the ones that could not be used."""

    tags: tuple[str, ...] = ()
    dropped: tuple[str, ...] = ()


def _valid(tag: str) -> bool:
    return len(tag) <= MAX_TAG_BYTES and _TAG_RE.fullmatch(tag) is not None


def uri_tag(host: str, path: str, config: PluginConfig) -> str:
    """The tag every entry of `host` + `path` carries (query and scope ignored)."""
    target = host.lower() + normalize_path(path, ignore_case=config.ignore_uri_case)
    tag = "uri:" + target
    if _valid(tag):
        return tag
    return "uri#" + hashlib.sha256(target.encode("utf-8", "surrogatepass")).hexdigest()


def header_tags(headers: HeaderInput, config: PluginConfig) -> list[str]:
    """Tags named by the configured tag headers, in header then value order."""
    h = Headers.of(headers)
    out: list[str] = []
    for name in config.tag_header_names:
        for line in h.get_all(name):
            parts = line.split() if "surrogate" in name else line.split(",")
            out.extend(p.strip() for p in parts if p.strip())
    return out


def _collect(candidates: list[str]) -> Tags:
    kept: dict[str, None] = {}
    dropped: list[str] = []
    for tag in candidates:
        if tag in kept:
            continue
        if _valid(tag) and len(kept) < MAX_TAGS:
            kept[tag] = None
        else:
            dropped.append(tag)
    return Tags(tuple(kept), tuple(dropped))


def entry_tags(
    host: str,
    path: str,
    response_headers: HeaderInput,
    config: PluginConfig,
    event_tags: Sequence[str] = (),
) -> Tags:
    """Tags to store an entry with: path tag (if invalidate_on_write), the `event_tags`
    (`kong_plugin.event_tags`, at most ``PREFIX_DEPTH + 4``, always valid), static tags,
    header tags."""
    candidates = [uri_tag(host, path, config)] if config.invalidate_on_write else []
    candidates.extend(event_tags)
    candidates.extend(config.tags)
    candidates.extend(header_tags(response_headers, config))
    return _collect(candidates)


def is_write(method: str, config: PluginConfig) -> bool:
    """An unsafe method that is not configured as cacheable."""
    return method not in SAFE_METHODS and method not in config.methods


def _same_host_path(host: str, path: str, reference: str) -> str | None:
    try:
        target = urlsplit(urljoin(f"http://{host}{path}", reference.strip()))
        netloc = target.netloc.rpartition("@")[2].lower()
    except ValueError:
        return None
    if netloc != host.lower():
        return None
    return target.path or "/"


def invalidation_targets(
    method: str,
    status: int,
    *,
    host: str,
    path: str,
    response_headers: HeaderInput,
    config: PluginConfig,
) -> Tags:
    """Tags to purge after a request (empty unless it is a successful write)."""
    if not config.invalidate_on_write or not is_write(method, config):
        return Tags()
    if not 200 <= status < 400:
        return Tags()
    h = Headers.of(response_headers)
    candidates = [uri_tag(host, path, config)]
    for name in ("location", "content-location"):
        value = h.get(name)
        if value:
            other = _same_host_path(host, path, value)
            if other is not None:
                candidates.append(uri_tag(host, other, config))
    candidates.extend(header_tags(h, config))
    candidates.extend(config.tags)
    return _collect(candidates)
