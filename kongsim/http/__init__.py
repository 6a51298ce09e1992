"""The HTTP side: the gateway that wires everything, the proxy (Kong's phases), kongsim's own
``/_kongsim/`` endpoints, and the bundled key-auth plugin.

The top of kongsim's dependencies: only :mod:`kongsim.cli` and :mod:`kongsim.testing` import it.
Within it, the gateway builds the proxy's and the endpoints' narrow views of itself
(:class:`~kongsim.http.proxy.ProxyServices`, :class:`~kongsim.http.admin.AdminHooks`), so
neither imports the gateway.
"""
