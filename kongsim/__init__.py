"""kongsim: a development and test stand-in for Kong 3.9 in front of *real* plugin servers.

kongsim reads a decK ``kong.yml``, starts the external plugin servers (the real ``kong-pdk``
processes) as Kong does, speaks Kong's side of their MessagePack-RPC protocol over their unix
sockets, and proxies HTTP to upstream services. It imports neither the plugin nor the sidecar.

Modules, one job each:

=================  ================================================================================
``config``         decK file → entities, with errors naming entity and field
``entities``       the frozen entity types (services, routes, consumers, credentials, plugins)
``schema``         Kong's schema language: defaults + validation of plugin configs
``luapattern``     Lua patterns (schema ``match`` validators) as Python regexes
``plugins``        plugin catalog (dumps), validated configs, precedence and priority order
``router``         route matching and the upstream path (path_handling v0)
``uri``            Kong's path normalization and escaping
``process``        plugin-server processes: query (``--dump``), start, logs, respawn, stop
``rpc``            the msgpack-RPC client with its connection pool
``instances``      Kong's per-worker instance table (StartInstance / CloseInstance / reset)
``bridge``         one plugin event: HandleEvent + the Step loop answering PDK callbacks
``pdk``            the PDK answers, one module per area, over a per-request ``state``
``state``          what Kong keeps per request (``ngx.var``/``ngx.ctx``)
``keyauth``        the bundled key-auth plugin, emulated in Python
``proxy``          the HTTP side: phases in Kong's order, Kong's headers, buffering
``upstream``       the request sent upstream and the headers passed back
``gateway``        wires everything together; start, stop, reload
``recorder``       per-request RPC/PDK statistics and strict-mode issues
``admin``          ``/_kongsim/*`` endpoints (loopback only)
``testing``        :class:`~kongsim.testing.KongSim`, an async context manager for test suites
``cli``            ``python -m kongsim``
``errors``         the exception types
=================  ================================================================================

What kongsim is NOT: it has no Admin API (config comes from the file; reload with
``POST /_kongsim/reload``), no database, no TLS listener, no HTTP/2, no gRPC or stream routes, no
upstreams/targets/load balancing/retries, no Lua plugins other than key-auth, no
``header_filter``/``body_filter`` phases (external plugins have none anyway), no vaults, no
workspaces. Each module's docstring lists what it simplifies.
"""

__version__ = "0.1.0"
