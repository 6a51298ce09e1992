"""kongsim: a development and test stand-in for Kong 3.9 in front of *real* plugin servers.

kongsim reads a decK ``kong.yml``, starts the external plugin servers (the real ``kong-pdk``
processes) as Kong does, speaks Kong's side of their MessagePack-RPC protocol over their unix
sockets, and proxies HTTP to upstream services. It imports neither the plugin nor the sidecar.

Packages by concern; imports point down this list (``tests/kongsim/test_layout.py`` checks it):

==============================  ====================================================================
``errors`` ``loglevels``        the exception types; Kong's log levels
``emulated`` ``recorder``       the Kong release answered as; per-request RPC/PDK stats, issues
``config/``                     kong.yml → entities: ``declarative`` (top level, consumers,
                                plugins), ``routes`` (services, routes), ``reader`` (field
                                readers), ``entities``; plugin configs: ``plugins`` (catalog from
                                dumps, validated configs, precedence, priority), ``schema``
                                (defaults, validation), ``validators``, ``metaschema``,
                                ``luapattern``
``request/``                    one request as Kong sees it: ``state`` (``ngx.var``/``ngx.ctx``),
                                ``router`` (path_handling v0), ``uri`` (normalization, escaping),
                                ``upstream`` (the request sent upstream, headers passed back)
``pdk/``                        the PDK answers, one module per area (``request``, ``client``,
                                ``context``, ``log``, ``response``, ``service``) over ``core``
                                (registry, phase rules); ``codec`` (Lua values, wire fix-ups),
                                ``args`` (query strings, form and JSON bodies), ``responses``
                                (Kong's own responses and error pages)
``protocol/``                   the plugin-server side: ``spec`` (declaring a server), ``process``
                                (query, start, logs, respawn, stop), ``rpc`` (msgpack-RPC client
                                and pool), ``instances`` (per-worker instance table), ``bridge``
                                (HandleEvent + the Step loop)
``http/``                       ``gateway`` (wires everything; start, stop, reload), ``runtime``
                                (one loaded configuration), ``proxy`` (Kong's phases, proxying),
                                ``exchange`` (a request in flight, Kong's responses, strict mode),
                                ``nginx`` (nginx's header rules and size limits), ``interim``
                                (upstream 1xx responses, as nginx 1.25.3 takes them), ``admin``
                                (``/_kongsim/*``), ``keyauth`` (the bundled key-auth plugin)
``testing`` ``cli``             :class:`~kongsim.testing.KongSim` for test suites; ``python -m
                                kongsim``
==============================  ====================================================================

What kongsim is NOT: it has no Admin API (config comes from the file; reload with
``POST /_kongsim/reload``), no database, no TLS listener, no HTTP/2, no gRPC or stream routes, no
upstreams/targets/load balancing/retries, no Lua plugins other than key-auth, no
``header_filter``/``body_filter`` phases (external plugins have none anyway), no vaults, no
workspaces. Each module's docstring lists what it simplifies.
"""

__version__ = "0.1.0"
