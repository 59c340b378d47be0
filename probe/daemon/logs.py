"""Logging for a service: one event per line on stderr, key=value fields, journald-friendly.

Under systemd (JOURNAL_STREAM set) each line starts with the syslog priority in sd-daemon's
``<N>`` form and carries no timestamp (journald adds its own); elsewhere a UTC timestamp.
"""

from __future__ import annotations

import logging
import os
import sys
import time

# Every line passes through it: the config's passwords and any URL's userinfo are masked.
from probe.redaction import redact as redact

_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}


class EventFormatter(logging.Formatter):
    def __init__(self, journald: bool) -> None:
        super().__init__()
        self.journald = journald

    def format(self, record: logging.LogRecord) -> str:
        message = redact(record.getMessage())
        if record.exc_info:
            message += " exc=" + redact(repr(record.exc_info[1]))
        line = f"level={record.levelname.lower()} logger={record.name} {message}".replace("\n", " ")
        if self.journald:
            return f"<{_PRIORITY.get(record.levelno, 6)}>{line}"
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.created))
        return f"{stamp} {line}"


def setup(level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(EventFormatter(journald="JOURNAL_STREAM" in os.environ))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # APScheduler logs every job at INFO; our own events say what happened.
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
