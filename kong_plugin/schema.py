"""The ``strata-cache`` configuration schema, in Kong's schema language -- the one place
where every field, default and range is written down.

`SCHEMA` is what the plugin module exports as kong-pdk's ``Schema``: a list of one-key
dicts in Kong's Lua schema syntax. The plugin server wraps it as the ``config`` record of
the plugin entity (``{"name": ..., "fields": [{"config": {"type": "record", "fields":
SCHEMA}}]}``) and Kong validates it with its metaschema, so only attributes that metaschema
accepts are used: ``type default required one_of between gt len_min len_max elements
fields description`` (every description is 10-500 characters, as the metaschema demands).

It is a superset of Kong's ``proxy-cache`` config (same names, same defaults), so a route
can switch plugins by renaming ``proxy-cache`` to ``strata-cache``:

* ``strategy`` is optional here (one of ``memory``/``strata``, default ``strata``) and
  ignored: Strata always uses its sidecar;
* ``memory.dictionary_name`` is accepted and ignored for the same reason;
* ``storage_ttl`` must be > 0 (Kong accepts 0, which in its shared dict means "forever").

`apply_schema` interprets the same list in Python (defaults, types, ranges), so that
`kong_plugin.config.parse_config` never restates a default. Cross-field rules that Kong's
schema language cannot express for an external plugin (no Lua validators cross the
plugin-server boundary) live in `kong_plugin.config`.

Not guaranteed: `apply_schema` implements only the attributes used here, and treats a
JSON ``{}`` where an array is expected as an empty array (Lua's cjson cannot tell them
apart).
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

SCHEMA: list[SchemaField] = [
    # --- Kong proxy-cache fields: same names, same defaults ---------------------------
    {
        "response_code": {
            "type": "array",
            "required": True,
            "len_min": 1,
            "default": [200, 301, 404],
            "elements": {"type": "integer", "between": [100, 900]},
            "description": "Upstream response status codes considered cacheable (as in Kong's "
            "proxy-cache). With cache_control=true a response with explicit freshness "
            "(s-maxage, max-age, Expires) is storable whatever its status.",
        }
    },
    {
        "request_method": {
            "type": "array",
            "required": True,
            "default": ["GET", "HEAD"],
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
            "elements": {"type": "string", "len_min": 1},
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
            "description": "Freshness lifetime, in seconds, of a stored response when "
            "cache_control=false (and the heuristic lifetime of a 'public' response without "
            "Last-Modified when cache_control=true).",
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
            "response directives, Expires, heuristic freshness). Privacy rules (no-store, "
            "private, Set-Cookie, Authorization) apply either way.",
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
            "description": "Seconds to keep an entry in storage, independent of its freshness, "
            "so that stale copies stay available for max-stale and revalidation. Unset: "
            "freshness lifetime plus the larger stale window.",
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
                        "description": "Accepted for compatibility with proxy-cache and ignored.",
                    }
                },
            ],
        }
    },
    {
        "vary_query_params": {
            "type": "array",
            "elements": {"type": "string", "len_min": 1},
            "description": "Query parameters that make up the cache key. Unset or empty: all "
            "parameters (minus ignore_query_params).",
        }
    },
    {
        "vary_headers": {
            "type": "array",
            "elements": {"type": "string", "len_min": 1},
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
                        "default": "unix:/tmp/strata-sidecar.sock",
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
            ],
        }
    },
    {
        "stale_while_revalidate": {
            "type": "integer",
            "required": True,
            "default": 0,
            "between": [0, _INT_MAX],
            "description": "Seconds a stale entry may be served while it is refreshed in the "
            "background (RFC 5861); the larger of this and the response's own directive applies.",
        }
    },
    {
        "stale_if_error": {
            "type": "integer",
            "required": True,
            "default": 0,
            "between": [0, _INT_MAX],
            "description": "Seconds a stale entry may be served when the upstream fails with "
            "500/502/503/504 or is unreachable (RFC 5861); the larger of this and the "
            "response's own directive applies.",
        }
    },
    {
        "tags": {
            "type": "array",
            "required": True,
            "default": [],
            "elements": {"type": "string", "len_min": 1, "len_max": 256},
            "description": "Static tags attached to every entry stored through this plugin "
            "instance, for purge by tag. A successful write through it purges them too.",
        }
    },
    {
        "tag_headers": {
            "type": "array",
            "required": True,
            "default": ["Surrogate-Key", "Cache-Tag"],
            "elements": {"type": "string", "len_min": 1},
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
        "ignore_query_params": {
            "type": "array",
            "required": True,
            "default": [],
            "elements": {"type": "string", "len_min": 1},
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
            "default": 0,
            "between": [0, 60000],
            "description": "How long a miss waits for a concurrent request that is already "
            "fetching the same key before going upstream itself. 0 disables waiting.",
        }
    },
    {
        "cache_status_name": {
            "type": "string",
            "required": True,
            "default": "strata",
            "len_min": 1,
            "len_max": 64,
            "description": "The cache's name in the RFC 9211 Cache-Status header (an sf-token).",
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
        if "len_min" in spec and len(value) < spec["len_min"]:
            raise ConfigError(path, f"length must be at least {spec['len_min']}")
        if "len_max" in spec and len(value) > spec["len_max"]:
            raise ConfigError(path, f"length must be at most {spec['len_max']}")
    return value


def apply_schema(
    fields: Sequence[SchemaField], raw: Mapping[str, Any], *, prefix: str = ""
) -> dict[str, Any]:
    """Validate `raw` against `fields` and fill defaults, the way Kong's schema layer does.

    A missing or null field takes its default (deep-copied); a record without a default
    is built from its own fields' defaults; a required field without one is an error.
    Keys of `raw` that are not schema fields are ignored here (see `parse_config`).
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
