"""How a plugin server is declared, and the environment nginx hands it.

A server is declared as ``NAME=START_CMD;QUERY_CMD[;SOCKET]`` (:meth:`PluginServerSpec.parse`).
In the commands, ``{python}`` is kongsim's interpreter, ``{prefix}`` the prefix directory (Kong's
``prefix``), ``{socket}`` the socket path and ``{name}`` the server name. The socket defaults to
``{prefix}/{name}.socket`` (Kong 3.9's default for ``pluginserver_<N>_socket``). Commands are
``str.format`` templates: a literal brace is written ``{{``/``}}``, and they cannot contain ``;``
(the field separator). Nothing here checks that a command exists or runs.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class PluginServerSpec:
    """How to query and start one plugin server."""

    name: str
    start_cmd: str
    query_cmd: str
    socket: str | None = None

    @classmethod
    def parse(cls, text: str) -> PluginServerSpec:
        """Parse ``NAME=START_CMD;QUERY_CMD[;SOCKET]``."""
        name, sep, rest = text.partition("=")
        parts = rest.split(";")
        if (
            not sep
            or not name.strip()
            or len(parts) not in (2, 3)
            or not all(p.strip() for p in parts)
        ):
            raise ValueError(
                f"invalid plugin server {text!r}: expected NAME=START_CMD;QUERY_CMD[;SOCKET]"
            )
        socket_path = parts[2].strip() if len(parts) == 3 else None
        return cls(name.strip(), parts[0].strip(), parts[1].strip(), socket_path)

    def expand(self, prefix: str, command: str) -> str:
        return command.format(
            python=sys.executable, prefix=prefix, socket=self.socket_path(prefix), name=self.name
        )

    def socket_path(self, prefix: str) -> str:
        if self.socket:
            return self.socket.format(prefix=prefix, name=self.name)
        return os.path.join(prefix, f"{self.name}.socket")


def default_spec() -> PluginServerSpec:
    """The repository's plugin server: ``strata-cache`` from the ``kong_plugin`` package."""
    return PluginServerSpec(
        name="strata-cache",
        start_cmd="{python} -m kong_plugin -p {prefix} --socket-name strata-cache.socket",
        query_cmd="{python} -m kong_plugin --dump",
    )


def child_env(passthrough: Sequence[str] = ()) -> dict[str, str]:
    """The environment an nginx worker hands a spawned process: ``TZ`` and the names listed in
    ``env`` directives (Kong: ``nginx_main_env``), when set; nothing else."""
    names = ["TZ", *passthrough]
    return {name: os.environ[name] for name in names if name in os.environ}


def parse_env_names(value: str) -> list[str]:
    """Names from a ``KONG_NGINX_MAIN_ENV``-style value: ``"A; env B"`` or ``"A,B"``."""
    names = []
    for part in value.replace(",", ";").split(";"):
        word = part.strip()
        if word.startswith("env "):
            word = word[4:].strip()
        if word:
            names.append(word.split("=", 1)[0])
    return names
