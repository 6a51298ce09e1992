"""Strata's plugin server: kong-pdk's wire protocol and PDK object, served by one or more
worker processes, each an asyncio loop running events as greenlets (see
`kong_plugin.pluginserver.worker` and `kong_plugin.pluginserver.supervisor`)."""
