"""Logging set-up: ECS JSON lines on stdout (for Filebeat/Logstash) or plain text.

Log records never carry cache keys, bodies or credentials; settings are logged redacted.
"""

from __future__ import annotations

import logging
import sys

import ecs_logging


def configure_logging(level: str = "INFO", fmt: str = "ecs") -> None:
    """Replace the root handlers with one stdout handler in the chosen format."""
    handler = logging.StreamHandler(sys.stdout)
    if fmt == "ecs":
        handler.setFormatter(ecs_logging.StdlibFormatter(exclude_fields=["process", "log.origin"]))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # grpc's own logger is chatty at INFO on shutdown.
    logging.getLogger("grpc").setLevel(max(logging.WARNING, root.level))
