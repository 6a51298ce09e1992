"""Kong's log levels on Python's :mod:`logging` scale.

Kong (``log_level`` in kong.conf, nginx's ``error_log`` level) has ``debug info notice warn
error crit alert emerg``; its default is ``notice``. ``notice`` sits between Python's INFO and
WARNING, ``alert``/``emerg`` above CRITICAL. kongsim logs what Kong logs at the level Kong
uses, so that what is hidden at Kong's default is hidden here too (a plugin server's output,
for one, is logged at ``info``).
"""

from __future__ import annotations

import logging

NOTICE = 25
ALERT = logging.CRITICAL + 5
EMERG = logging.CRITICAL + 10

KONG_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "notice": NOTICE,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "crit": logging.CRITICAL,
    "alert": ALERT,
    "emerg": EMERG,
}

logging.addLevelName(NOTICE, "NOTICE")
logging.addLevelName(ALERT, "ALERT")
logging.addLevelName(EMERG, "EMERG")


def kong_log_level(name: str) -> int | None:
    """A Kong (or Python) log level name as a :mod:`logging` level; ``None`` if unknown."""
    return KONG_LEVELS.get(str(name).strip().lower())
