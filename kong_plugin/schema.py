"""The ``strata-cache`` configuration schema, in Kong's schema language -- the one place
where every field, default, range and format rule is written down.

`SCHEMA` is what the plugin module exports as kong-pdk's ``Schema``: a list of one-key
dicts in Kong's Lua schema syntax. The plugin server prints it in its ``--dump`` as the
``config`` record of the plugin entity (``{"name": ..., "fields": [{"config": {"type":
"record", "fields": SCHEMA}}]}``); Kong reads that JSON (``query_external_plugin_info`` in
``kong/runloop/plugin_servers/process.lua``), checks it with its metaschema
(``MetaSchema.MetaSubSchema`` via ``plugin_loader.load_subschema``) and validates every
``strata-cache`` plugin entity against it when it loads ``kong.yml`` or accepts an Admin API
write. Only data crosses that JSON boundary -- no ``custom_validator`` or entity check (Lua
functions) -- so the attributes used are: ``type default required one_of between gt len_min
len_max match_all match_none match_any elements fields description`` (every description
is 10-500 bytes, as the metaschema demands; ``match_*`` and ``len_*`` are also allowed on
array elements).

What Kong 3.9 therefore refuses at config load (field -> attribute):

* ``response_code``: 1-64 entries (``len_min``/``len_max``), each 100-900 (``between``);
* ``request_method``: at most 64 entries, each one of HEAD GET POST PATCH PUT (``one_of``);
* ``content_type``: at most 64 entries of 1-256 bytes; each must start like a media range
  -- ``*``, or ``type/subtype`` (RFC 9110 tokens, ``*`` allowed) followed by the end or a
  ``;`` (``match_any``, `ERR_MEDIA_RANGE`); the parameters after ``;`` are checked by the
  plugin only;
* ``cache_ttl``, ``storage_ttl``: > 0 (``gt``, proxy-cache's message) and at most
  `MAX_TTL_SECONDS` (365 days, the sidecar's default ``max_ttl_seconds``; ``between``);
  ``stale_while_revalidate``, ``stale_if_error``: 0 to `MAX_TTL_SECONDS` (``between``);
* ``strategy``, ``consumer_scope``, ``cookie_requests``: ``one_of``; ``sidecar.timeout_ms``,
  ``max_body_bytes``, ``coalesce_wait_ms``:
  ``between``; ``sidecar.uid`` (optional): 0 to 2^32-2 (``between``);
* ``memory.dictionary_name``: 1-256 bytes;
* ``vary_query_params``, ``ignore_query_params``: at most 64 names of 1-256 bytes without
  control characters (``match_none``, `ERR_CONTROL`);
* ``vary_headers``, ``tag_headers``, ``strip_request_headers``: at most 64 names of 1-256
  bytes, each an RFC 9110 header field name, i.e. a token (``match_all``,
  `ERR_HEADER_NAME`);
* ``tags``: at most 64 tags of 1-256 bytes, printable ASCII without spaces (``match_all``,
  `ERR_TAG`) or commas (``match_none``, `ERR_TAG_COMMA`) -- the sidecar's tag alphabet;
* ``cache_status_name``: 1-64 bytes, an RFC 8941 sf-token (``match_all``, `ERR_SF_TOKEN`);
* ``sidecar.address``: 1-260 bytes (a 253-byte DNS name plus ``:65535``), either
  ``unix:/abs/path`` or ``unix:///abs/path`` (the path without spaces or control
  characters) or ``host:port`` with a host name, an IPv4 address or an ``[IPv6]`` address
  and a port of 1-5 digits (``match_any``, `ERR_ADDRESS`); a port of 0 or above 65535 is
  refused too (``match_none``, `ERR_PORT`: Lua patterns have no alternation, but a list of
  rules can spell out the five-digit numbers above 65535).

Lua patterns are matched on bytes with LuaJIT's ASCII character classes, so every rule
here is an ASCII rule and a byte >= 0x80 is simply "not in the class".

Left to the plugin (`kong_plugin.config.parse_config`, i.e. when the plugin server starts
an instance -- on real Kong at the first request that uses it): the cross-field rules
(``storage_ttl >= cache_ttl``; no ``vary_query_params`` name matched by an
``ignore_query_params`` glob), which would need an entity check, a Lua function that
cannot cross the plugin server's JSON dump; and the full media-range grammar of
``content_type`` parameters (a repeated group, which a Lua pattern cannot express).

It is a superset of Kong's ``proxy-cache`` config (same names, same defaults), so a route
can switch plugins by renaming ``proxy-cache`` to ``strata-cache``:

* ``strategy`` is optional here (one of ``memory``/``strata``, default ``strata``) and
  ignored: Strata always uses its sidecar;
* ``memory.dictionary_name`` is accepted and ignored for the same reason;
* ``storage_ttl`` must be > 0 (Kong accepts 0, which in its shared dict means "forever");
* the format rules and length limits above are Strata's own (proxy-cache has none): a
  proxy-cache config breaking a format rule (say, a header name with a space) never did
  what it meant, and the limits are far above any sane configuration.

`apply_schema` interprets the same list in Python (defaults, types, ranges, lengths in
UTF-8 bytes, non-empty strings) so that `kong_plugin.config.parse_config` never restates a
default. It does NOT evaluate the Lua patterns (``match_all``/``match_none``/``match_any``):
`parse_config` enforces the same rules with Python regexes, never accepting a value a
pattern refuses (``tests/unit/plugin/test_schema_patterns.py`` checks the two agree).

Not guaranteed: `apply_schema` implements only the attributes used here, and treats a
JSON ``{}`` where an array is expected as an empty array (Lua's cjson cannot tell them
apart, and Kong does the same).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from typing import Any

from kong_plugin.errors import ConfigError

PLUGIN_NAME = "strata-cache"

SchemaField = dict[str, dict[str, Any]]

_INT_MAX = 2147483647  # a Lua/JSON-safe upper bound for second and millisecond counts
#: Longest TTL, stale window or storage TTL, in seconds: the sidecar's default
#: ``max_ttl_seconds`` (365 days). A longer one would be refused by the sidecar on every Store.
MAX_TTL_SECONDS = 365 * 24 * 3600

#: Entries in any list setting.
MAX_LIST = 64
#: Bytes in a header name, query parameter name, tag, content type or dictionary name.
MAX_NAME = 256
#: Bytes in ``sidecar.address``: the longest DNS name (253) plus ``:65535``, rounded up.
MAX_ADDRESS = 260
#: Largest ``sidecar.uid``: 2^32-2 (2^32-1 is the kernel's "no uid").
MAX_UID = 2**32 - 2
#: The default ``strip_request_headers``: override headers origins commonly honour (why each,
#: and why Kong's own ``X-Forwarded-*`` are not here: `kong_plugin.poisoning`).
STRIP_REQUEST_HEADERS = [
    # method overrides
    "X-HTTP-Method-Override",
    "X-HTTP-Method",
    "X-Method-Override",
    # URL rewrites
    "X-Original-URL",
    "X-Rewrite-URL",
    # host overrides
    "X-Host",
    "X-Forwarded-Server",
    "X-Original-Host",
    "X-HTTP-Host-Override",
    "Forwarded",
    # scheme overrides
    "X-Forwarded-Scheme",
    "X-Forwarded-SSL",
    "Front-End-Https",
    "X-Url-Scheme",
    "X-Forwarded-Protocol",
]

# Lua patterns (see the module docstring). Inside a set, every punctuation character is
# escaped with ``%`` -- always a literal in Lua -- so no ``-`` or ``^`` is read as syntax.
_TCHAR = "%w!#%$%%&'%*%+%-%.%^_`|~"  # RFC 9110 tchar
_TOKEN = f"[{_TCHAR}]+"
_OWS = "[ \t]*"
_DIGITS = "%d%d?%d?%d?%d?"
_NO_SLASH = "^[^/]*:"  # "host:" -- a unix: address always holds a '/'
_PATH = "[^/%c ][^%c ]*$"

ERR_HEADER_NAME = (
    "must be an HTTP header field name: letters, digits and !#$%&'*+-.^_`|~ (RFC 9110 token)"
)
ERR_SF_TOKEN = (
    "must be an RFC 8941 token: a letter or '*', then letters, digits and !#$%&'*+-.^_`|~:/"
)
ERR_TAG = "must be printable ASCII without spaces"
ERR_TAG_COMMA = "must not contain a comma"
ERR_CONTROL = "must not contain control characters"
ERR_MEDIA_RANGE = "must be a media range: '*' or type/subtype ('*' allowed), then ';' parameters"
ERR_ADDRESS = (
    "must be unix:/absolute/path, unix:///absolute/path (no spaces) or host:port "
    "(a host name, an IPv4 address or an [IPv6] address)"
)
ERR_PORT = "port must be between 1 and 65535"

HEADER_NAME_RULES = [{"pattern": f"^{_TOKEN}$", "err": ERR_HEADER_NAME}]
SF_TOKEN_RULES = [{"pattern": f"^[%a%*][{_TCHAR}:/]*$", "err": ERR_SF_TOKEN}]
TAG_RULES = [{"pattern": "^[!-~]+$", "err": ERR_TAG}]
TAG_FORBIDDEN = [{"pattern": ",", "err": ERR_TAG_COMMA}]
CONTROL_FORBIDDEN = [{"pattern": "%c", "err": ERR_CONTROL}]
MEDIA_RANGE_ANY = {
    "patterns": [
        f"^{_OWS}%*{_OWS}$",
        f"^{_OWS}{_TOKEN}/{_TOKEN}{_OWS}$",
        f"^{_OWS}{_TOKEN}/{_TOKEN}{_OWS};",
    ],
    "err": ERR_MEDIA_RANGE,
}
ADDRESS_ANY = {
    "patterns": [
        f"^unix:/{_PATH}",
        f"^unix:///{_PATH}",
        f"^%w:{_DIGITS}$",
        f"^%w[%w%.%-_]*%w:{_DIGITS}$",  # "_": Docker/Compose service names
        f"^%[[%x:%.]+%]:{_DIGITS}$",
    ],
    "err": ERR_ADDRESS,
}
PORT_FORBIDDEN = [
    {"pattern": f"{_NO_SLASH}{port}$", "err": ERR_PORT}
    for port in ("0+", "6553[6-9]", "655[4-9]%d", "65[6-9]%d%d", "6[6-9]%d%d%d", "[7-9]%d%d%d%d")
]


def _names(**extra: Any) -> dict[str, Any]:
    """An element spec for a list of names: 1-256 bytes plus `extra` rules."""
    return {"type": "string", "len_min": 1, "len_max": MAX_NAME, **extra}


SCHEMA: list[SchemaField] = [
    # --- Kong proxy-cache fields: same names, same defaults ---------------------------
    {
        "response_code": {
            "type": "array",
            "required": True,
            "len_min": 1,
            "len_max": MAX_LIST,
            "default": [200, 301, 404],
            "elements": {"type": "integer", "between": [100, 900]},
            "description": "Upstream response status codes considered cacheable (as in Kong's "
            "proxy-cache) when cache_control=false. With cache_control=true it is not "
            "consulted: RFC 9111 decides (explicit freshness for any final status but 206/304; "
            "heuristic freshness for the statuses RFC 9110 section 15.1 makes heuristically "
            "cacheable, or any status with public).",
        }
    },
    {
        "request_method": {
            "type": "array",
            "required": True,
            "default": ["GET", "HEAD"],
            "len_max": MAX_LIST,
            "elements": {"type": "string", "one_of": ["HEAD", "GET", "POST", "PATCH", "PUT"]},
            "description": "Downstream request methods considered cacheable. A HEAD request is "
            "answered from an entry stored by a GET. POST/PATCH/PUT are allowed as in Kong "
            "(the request body is NOT part of the cache key).",
        }
    },
    {
        "content_type": {
            "type": "array",
            "required": True,
            "default": ["text/plain", "application/json"],
            "len_max": MAX_LIST,
            "elements": _names(match_any=MEDIA_RANGE_ANY),
            "description": "Upstream Content-Type values considered cacheable. '*' wildcards are "
            "allowed in type and subtype; parameters must match exactly and in the same number "
            "(Kong >= 3.2 semantics).",
        }
    },
    {
        "cache_ttl": {
            "type": "integer",
            "default": 300,
            "gt": 0,
            "between": [1, MAX_TTL_SECONDS],
            "description": "Freshness lifetime, in seconds, of a stored response when "
            "cache_control=false (and the heuristic lifetime of a 'public' response without "
            "Last-Modified when cache_control=true). At most 31536000 (365 days, the "
            "sidecar's default max_ttl_seconds).",
        }
    },
    {
        "strategy": {
            "type": "string",
            "default": "strata",
            "one_of": ["memory", "strata"],
            "description": "Accepted for compatibility with proxy-cache configs and ignored: "
            "Strata always stores in its sidecar.",
        }
    },
    {
        "cache_control": {
            "type": "boolean",
            "required": True,
            "default": False,
            "description": "When enabled, follow RFC 9111 Cache-Control semantics (request and "
            "response directives, Expires, heuristic freshness; response_code is then not "
            "consulted). Privacy rules (no-store, "
            "private, Set-Cookie, Cookie, Authorization) apply either way.",
        }
    },
    {
        "ignore_uri_case": {
            "type": "boolean",
            "default": False,
            "description": "Lower-case the request path before building the cache key.",
        }
    },
    {
        "storage_ttl": {
            "type": "integer",
            "gt": 0,
            "between": [1, MAX_TTL_SECONDS],
            "description": "Seconds to keep an entry in storage, independent of its freshness, "
            "so that stale copies stay available for max-stale and revalidation. Unset: "
            "freshness lifetime plus the larger stale window. At most 31536000 (365 days, the "
            "sidecar's default max_ttl_seconds).",
        }
    },
    {
        "memory": {
            "type": "record",
            "description": "proxy-cache's memory strategy settings; accepted and ignored.",
            "fields": [
                {
                    "dictionary_name": {
                        "type": "string",
                        "required": True,
                        "default": "kong_db_cache",
                        "len_max": MAX_NAME,
                        "description": "Accepted for compatibility with proxy-cache and ignored.",
                    }
                },
            ],
        }
    },
    {
        "vary_query_params": {
            "type": "array",
            "len_max": MAX_LIST,
            "elements": _names(match_none=CONTROL_FORBIDDEN),
            "description": "Query parameters that make up the cache key. Unset or empty: all "
            "parameters (minus ignore_query_params).",
        }
    },
    {
        "vary_headers": {
            "type": "array",
            "len_max": MAX_LIST,
            "elements": _names(match_all=HEADER_NAME_RULES),
            "description": "Request headers whose values make up the cache key. Unset: none.",
        }
    },
    {
        "response_headers": {
            "type": "record",
            "description": "Caching-related diagnostic headers added to responses.",
            "fields": [
                {
                    "age": {
                        "type": "boolean",
                        "default": True,
                        "description": "Send the Age header on cached responses.",
                    }
                },
                {
                    "X-Cache-Status": {
                        "type": "boolean",
                        "default": True,
                        "description": "Send X-Cache-Status (Hit, Miss, Bypass, Refresh, Stale).",
                    }
                },
                {
                    "X-Cache-Key": {
                        "type": "boolean",
                        "default": True,
                        "description": "Send X-Cache-Key with the cache key.",
                    }
                },
                {
                    "Cache-Status": {
                        "type": "boolean",
                        "default": True,
                        "description": "Send the RFC 9211 Cache-Status header.",
                    }
                },
            ],
        }
    },
    # --- Strata's own fields -----------------------------------------------------------
    {
        "sidecar": {
            "type": "record",
            "description": "How to reach the Strata sidecar cache engine on this node.",
            "fields": [
                {
                    "address": {
                        "type": "string",
                        "required": True,
                        "len_min": 1,
                        "len_max": MAX_ADDRESS,
                        "match_none": PORT_FORBIDDEN,
                        "match_any": ADDRESS_ANY,
                        "default": "unix:/run/strata/sidecar.sock",
                        "description": "gRPC address of the node-local sidecar: "
                        "unix:/absolute/path or host:port. The default equals the sidecar's "
                        "default listen address.",
                    }
                },
                {
                    "timeout_ms": {
                        "type": "integer",
                        "required": True,
                        "default": 50,
                        "between": [1, 60000],
                        "description": "Deadline for one sidecar call, in milliseconds; past it "
                        "the request fails open (proxied as if no cache existed).",
                    }
                },
                {
                    "uid": {
                        "type": "integer",
                        "between": [0, MAX_UID],
                        "description": "The uid the sidecar must run as: on a unix socket the "
                        "plugin checks the listener's credentials before sending anything and "
                        "bypasses the cache otherwise. Null: the plugin server's own uid.",
                    }
                },
            ],
        }
    },
    {
        "stale_while_revalidate": {
            "type": "integer",
            "required": True,
            "default": 0,
            "between": [0, MAX_TTL_SECONDS],
            "description": "Seconds a stale entry may be served while it is refreshed in the "
            "background (RFC 5861); the larger of this and the response's own directive applies. "
            "At most 31536000 (365 days, the sidecar's default max_ttl_seconds).",
        }
    },
    {
        "stale_if_error": {
            "type": "integer",
            "required": True,
            "default": 0,
            "between": [0, MAX_TTL_SECONDS],
            "description": "Seconds a stale entry may be served when the upstream fails with "
            "500/502/503/504 or is unreachable (RFC 5861); the larger of this and the "
            "response's own directive applies. At most 31536000 (365 days, the "
            "sidecar's default max_ttl_seconds).",
        }
    },
    {
        "tags": {
            "type": "array",
            "required": True,
            "default": [],
            "len_max": MAX_LIST,
            "elements": _names(match_none=TAG_FORBIDDEN, match_all=TAG_RULES),
            "description": "Static tags attached to every entry stored through this plugin "
            "instance, for purge by tag. A successful write through it purges them too.",
        }
    },
    {
        "tag_headers": {
            "type": "array",
            "required": True,
            "default": ["Surrogate-Key", "Cache-Tag"],
            "len_max": MAX_LIST,
            "elements": _names(match_all=HEADER_NAME_RULES),
            "description": "Upstream response headers that carry tags: Surrogate-Key is "
            "space-separated, every other header comma-separated.",
        }
    },
    {
        "invalidate_on_write": {
            "type": "boolean",
            "required": True,
            "default": True,
            "description": "After a successful (2xx/3xx) unsafe request, invalidate the target "
            "path and same-host Location/Content-Location (RFC 9111 section 4.4).",
        }
    },
    {
        "event_tags": {
            "type": "boolean",
            "required": True,
            "default": True,
            "description": "Stamp every stored entry with the tags invalidation events reach: "
            "url:<path?query>, path:<prefix> per path segment, route-name:<route> and "
            "service:<service> (so that an event's urls, prefixes and flush purge it).",
        }
    },
    {
        "ignore_query_params": {
            "type": "array",
            "required": True,
            "default": [],
            "len_max": MAX_LIST,
            "elements": _names(match_none=CONTROL_FORBIDDEN),
            "description": "Query parameter names left out of the cache key; '*' and '?' are "
            "glob wildcards, e.g. 'utm_*'.",
        }
    },
    {
        "consumer_scope": {
            "type": "string",
            "required": True,
            "default": "auto",
            "one_of": ["auto", "always", "never"],
            "description": "auto: entries are per consumer whenever a consumer is authenticated "
            "(Kong's behaviour); always: per consumer, anonymous requests share one scope; "
            "never: shared by all consumers.",
        }
    },
    {
        "max_body_bytes": {
            "type": "integer",
            "required": True,
            "default": 1048576,
            "between": [1, _INT_MAX],
            "description": "Responses with a larger body are not stored.",
        }
    },
    {
        "coalesce_wait_ms": {
            "type": "integer",
            "required": True,
            "default": 5000,
            "between": [0, 60000],
            "description": "How long a miss waits for a concurrent request that is already "
            "fetching the same key before going upstream itself (never longer than the "
            "service's read_timeout, nor the sidecar's coalesce_max_wait_ms). 0 disables "
            "waiting.",
        }
    },
    {
        "strip_request_headers": {
            "type": "array",
            "required": True,
            "default": STRIP_REQUEST_HEADERS,
            "len_max": MAX_LIST,
            "elements": _names(match_all=HEADER_NAME_RULES),
            "description": "Request headers removed before proxying a request whose response "
            "may be stored: override headers origins honour (method, URL, host, scheme) that "
            "would let one client shape the entry everyone is served. A header listed in "
            "vary_headers is keyed and kept. Empty: strip nothing.",
        }
    },
    {
        "cookie_requests": {
            "type": "string",
            "required": True,
            "default": "explicit",
            "one_of": ["explicit", "ignore", "bypass"],
            "description": "Requests with a Cookie the key does not hold: explicit: use and "
            "store shared entries only when the response says public or s-maxage; bypass: "
            "never use the cache; ignore: treat them as any other request (unsafe for "
            "per-user pages).",
        }
    },
    {
        "cache_status_name": {
            "type": "string",
            "required": True,
            "default": "strata",
            "len_min": 1,
            "len_max": 64,
            "match_all": SF_TOKEN_RULES,
            "description": "The cache's name in the RFC 9211 Cache-Status header (an sf-token).",
        }
    },
    {
        "keep_ttl": {
            "type": "integer",
            "required": True,
            "default": 3600,
            "between": [0, MAX_TTL_SECONDS],
            "description": "Seconds a stored response with a validator (ETag or Last-Modified) "
            "is kept after its freshness and stale windows end, so that it is revalidated with "
            "a conditional request (a 304 renews it) instead of fetched again. A kept entry is "
            "never served without revalidation and is evicted like any other. 0: kept no "
            "longer than its windows (entries stored only to be revalidated still get "
            "cache_ttl). Ignored when storage_ttl is set.",
        }
    },
    {
        "cache_set_cookie": {
            "type": "boolean",
            "required": True,
            "default": False,
            "description": "Store responses that carry Set-Cookie (the Set-Cookie lines "
            "themselves are never stored or replayed). Off by default: a response that sets a "
            "cookie is usually someone's own.",
        }
    },
    {
        "near_cache": {
            "type": "boolean",
            "required": True,
            "default": True,
            "description": "Answer this route's hottest fresh entries from the plugin "
            "server's own memory (the near-cache), with no sidecar call; the sidecar pushes "
            "every change to it. Its size is set on the plugin server (--near-cache-bytes).",
        }
    },
    {
        "serve_ranges": {
            "type": "boolean",
            "required": True,
            "default": True,
            "description": "Answer a single-range GET (Range: bytes=...) from a stored complete "
            "200 with 206 Partial Content, or 416 when unsatisfiable (RFC 9110 section 14). "
            "Off: Range requests bypass the cache.",
        }
    },
    {
        "targeted_cache_control": {
            "type": "record",
            "description": "Targeted Cache-Control fields (RFC 9213): when the first one "
            "present is a valid Structured Field dictionary, it alone decides freshness and "
            "storage; Cache-Control and Expires are then ignored by the cache.",
            "fields": [
                {
                    "field": {
                        "type": "string",
                        "len_min": 1,
                        "len_max": MAX_NAME,
                        "default": "Strata-Cache-Control",
                        "match_all": HEADER_NAME_RULES,
                        "required": True,
                        "description": "Strata's own targeted field, consulted before "
                        "CDN-Cache-Control.",
                    }
                },
                {
                    "cdn_cache_control": {
                        "type": "boolean",
                        "required": True,
                        "default": True,
                        "description": "Honour CDN-Cache-Control (after Strata's own field).",
                    }
                },
                {
                    "forward_field": {
                        "type": "boolean",
                        "required": True,
                        "default": False,
                        "description": "Pass Strata's own field on to clients (it targets "
                        "this cache, so by default it is removed from the responses the "
                        "cache handles).",
                    }
                },
                {
                    "forward_cdn_cache_control": {
                        "type": "boolean",
                        "required": True,
                        "default": True,
                        "description": "Pass CDN-Cache-Control on to clients, for CDNs "
                        "downstream (RFC 9213 section 2.1).",
                    }
                },
            ],
        }
    },
    {
        "background_refresh": {
            "type": "record",
            "description": "Refreshing stale entries inside their stale-while-revalidate window "
            "without making a client wait (RFC 5861).",
            "fields": [
                {
                    "enabled": {
                        "type": "boolean",
                        "required": True,
                        "default": True,
                        "description": "Serve the stale copy to every request in the window and "
                        "refresh it from the plugin server, one refresh per key cluster-wide. "
                        "Off: the request holding the refresh lease waits for the upstream.",
                    }
                },
                {
                    "forward_headers": {
                        "type": "array",
                        "required": True,
                        "default": [],
                        "len_max": MAX_LIST,
                        "elements": _names(match_all=HEADER_NAME_RULES),
                        "description": "Request headers the refresh carries besides those the "
                        "key and the response vary on (for example an API key the upstream "
                        "needs).",
                    }
                },
                {
                    "timeout_ms": {
                        "type": "integer",
                        "required": True,
                        "default": 10000,
                        "between": [100, 300000],
                        "description": "Whole-refresh deadline (connect, send, read).",
                    }
                },
                {
                    "max_concurrent": {
                        "type": "integer",
                        "required": True,
                        "default": 16,
                        "between": [1, 256],
                        "description": "Refreshes in flight at once per plugin-server "
                        "process; beyond it a refresh is skipped (the stale copy stays).",
                    }
                },
            ],
        }
    },
    {
        "analytics": {
            "type": "record",
            "description": "Per-request cache events (analytics), sampled and sent in batches "
            "to the sidecar, which publishes them on its Kafka analytics topic.",
            "fields": [
                {
                    "sample_rate": {
                        "type": "number",
                        "required": True,
                        "default": 0.0,
                        # Kong's `between` lets NaN through (both comparisons are false,
                        # kong/db/schema/init.lua); `gt` does not, so NaN fails at load
                        "gt": -1,
                        "between": [0, 1],
                        "err": "must be a number from 0 to 1",
                        "description": "Share of this route's requests that produce an "
                        "analytics event, 0.0 (off) to 1.0 (every request).",
                    }
                },
            ],
        }
    },
]


def _is_int(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and value.is_integer())


def _check_value(spec: Mapping[str, Any], value: Any, path: str) -> Any:
    kind = spec["type"]
    if kind == "string":
        if not isinstance(value, str):
            raise ConfigError(path, f"expected a string, got {type(value).__name__}")
    elif kind in ("integer", "number"):
        if kind == "integer" and not _is_int(value):
            raise ConfigError(path, f"expected an integer, got {value!r}")
        if kind == "number" and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise ConfigError(path, f"expected a number, got {value!r}")
        value = int(value) if kind == "integer" else value
        if "between" in spec and not spec["between"][0] <= value <= spec["between"][1]:
            low, high = spec["between"]
            raise ConfigError(path, f"value should be between {low} and {high}, got {value}")
        if "gt" in spec and not value > spec["gt"]:
            raise ConfigError(path, f"value must be greater than {spec['gt']}, got {value}")
    elif kind == "boolean":
        if not isinstance(value, bool):
            raise ConfigError(path, f"expected a boolean, got {value!r}")
    elif kind == "array":
        if isinstance(value, Mapping) and not value:
            value = []  # cjson encodes an empty Lua table as {}
        if not isinstance(value, Sequence) or isinstance(value, (str, bytes)):
            raise ConfigError(path, f"expected an array, got {type(value).__name__}")
        value = [_check_value(spec["elements"], v, f"{path}[{i}]") for i, v in enumerate(value)]
    elif kind == "record":
        if not isinstance(value, Mapping):
            raise ConfigError(path, f"expected a record, got {type(value).__name__}")
        return apply_schema(spec["fields"], value, prefix=f"{path}.")
    else:  # pragma: no cover - the schema only uses the types above
        raise ConfigError(path, f"unsupported schema type {kind!r}")
    if "one_of" in spec and value not in spec["one_of"]:
        choices = ", ".join(map(str, spec["one_of"]))
        raise ConfigError(path, f"expected one of: {choices}; got {value!r}")
    if isinstance(value, (str, list)):
        # Kong counts a string's bytes (Lua's #) and refuses an empty one by default.
        size = len(value.encode("utf-8", "surrogatepass")) if isinstance(value, str) else len(value)
        len_min = spec.get("len_min", 1 if kind == "string" else None)
        if len_min is not None and size < len_min:
            raise ConfigError(path, f"length must be at least {len_min}")
        if "len_max" in spec and size > spec["len_max"]:
            raise ConfigError(path, f"length must be at most {spec['len_max']}")
    return value


def apply_schema(
    fields: Sequence[SchemaField], raw: Mapping[str, Any], *, prefix: str = ""
) -> dict[str, Any]:
    """Validate `raw` against `fields` and fill defaults, the way Kong's schema layer does.

    A missing or null field takes its default (deep-copied); a record without a default
    is built from its own fields' defaults; a required field without one is an error.
    Keys of `raw` that are not schema fields are ignored here (see `parse_config`).
    Checked: types, ``one_of``, ``between``, ``gt``, ``len_min``/``len_max`` (UTF-8 bytes
    for strings; a string without ``len_min`` must be non-empty, as in Kong). Lua patterns
    (``match_all``/``match_none``/``match_any``) are NOT evaluated here: `parse_config`
    enforces the same rules in Python.
    """
    out: dict[str, Any] = {}
    for entry in fields:
        ((name, spec),) = entry.items()
        path = f"{prefix}{name}"
        value = raw.get(name)
        if value is None:
            if "default" in spec:
                value = copy.deepcopy(spec["default"])
            elif spec["type"] == "record":
                value = {}
            elif spec.get("required"):
                raise ConfigError(path, "required field missing")
            else:
                out[name] = None
                continue
        out[name] = _check_value(spec, value, path)
    return out


def field_names(fields: Sequence[SchemaField] = SCHEMA) -> list[str]:
    """The names of `fields`, in schema order."""
    return [next(iter(entry)) for entry in fields]


def find_field(path: str, fields: Sequence[SchemaField] = SCHEMA) -> dict[str, Any]:
    """The spec of the field at dotted `path` (e.g. ``"sidecar.timeout_ms"``)."""
    head, _, rest = path.partition(".")
    for entry in fields:
        if head in entry:
            spec = entry[head]
            return find_field(rest, spec["fields"]) if rest else spec
    raise KeyError(path)


def plugin_schema() -> dict[str, Any]:
    """The plugin entity schema as the kong-pdk plugin server reports it to Kong."""
    return {"name": PLUGIN_NAME, "fields": [{"config": {"type": "record", "fields": SCHEMA}}]}


def dump_schema() -> str:
    """`plugin_schema` as stable, indented JSON (for docs and review diffs)."""
    return json.dumps(plugin_schema(), indent=2, sort_keys=False)
