"""Kong's side of the external plugin-server protocol: the plugin-server processes, the
MessagePack-RPC client, Kong's per-worker instance table, and the event bridge that answers PDK
callbacks (with :mod:`kongsim.pdk`).

Imports :mod:`kongsim.config`, :mod:`kongsim.request`, :mod:`kongsim.pdk` and
:mod:`kongsim.recorder`; knows nothing of HTTP listening (:mod:`kongsim.http`).
"""
