"""Log output: today's text lines, or one JSON object per line (``--log-format json``) for log shippers.

While the poller works on a ticket, every record logged (by the workflow or a connector) carries that
ticket, its tenant and its stage; a record may also name them itself (``extra={"stage": ...}``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
FIELDS = ("ticket", "tenant", "stage", "event")

_scope: ContextVar[dict[str, str | None] | None] = ContextVar("mailunblock_log_scope", default=None)


class LogFormat(StrEnum):
    """The log output formats."""

    TEXT = "text"
    JSON = "json"


@contextmanager
def ticket_scope(ticket: str, tenant: str | None, stage: str | None) -> Iterator[None]:
    """Tag every record logged inside the block with this ticket, tenant and stage."""
    token = _scope.set({"ticket": ticket, "tenant": tenant, "stage": stage})
    try:
        yield
    finally:
        _scope.reset(token)


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, ticket, tenant, stage, event, message."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON."""
        scope = _scope.get() or {}
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
        }
        for name in FIELDS:
            value = getattr(record, name, None) or scope.get(name)
            line[name] = str(value) if value is not None else None
        line["message"] = record.getMessage()
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


def formatter(fmt: LogFormat) -> logging.Formatter:
    """The formatter of a log format."""
    return JsonFormatter() if fmt is LogFormat.JSON else logging.Formatter(TEXT_FORMAT)


def use_format(fmt: LogFormat) -> None:
    """Format every handler of the root logger in ``fmt``."""
    for handler in logging.getLogger().handlers:
        handler.setFormatter(formatter(fmt))
