"""What Kong knows and decides about one request: its per-request state (``ngx.var``/``ngx.ctx``),
the route it matched, Kong's path normalization, and the request it sends upstream.

Imports :mod:`kongsim.config` only; the PDK, the protocol and the HTTP side build on it.
"""
