"""How `triage serve` logs: the service's and uvicorn's messages, every line with a UTC
timestamp, at TRIAGE_LOG_LEVEL, as text or (TRIAGE_LOG_JSON) one JSON object per line.

Nothing here logs petition text: the routes log ids and error types only, and
SQLAlchemy's logger (whose SQL parameters would hold text) is left at WARNING
whatever the level."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

TEXT_FORMAT = "%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s"
ACCESS_FORMAT = '%(asctime)s %(levelname)s [%(process)d] %(client_addr)s - "%(request_line)s" %(status_code)s'


class UTCFormatter(logging.Formatter):
    """Timestamps as ISO 8601 in UTC with the offset written out, e.g. 2026-12-06T01:00:00.123+00:00."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")


class AccessFormatter(UTCFormatter):
    """uvicorn's access records carry (client, method, path, version, status) as arguments."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        _access_fields(record)
        return super().formatMessage(record)


def _access_fields(record: logging.LogRecord) -> None:
    if isinstance(record.args, tuple) and len(record.args) == 5 and not hasattr(record, "request_line"):
        client, method, path, http_version, status = record.args
        record.client_addr, record.status_code = client, status
        record.request_line = f"{method} {path} HTTP/{http_version}"


class JSONFormatter(UTCFormatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {"time": self.formatTime(record), "level": record.levelname, "logger": record.name,
                                 "pid": record.process}
        _access_fields(record)
        if hasattr(record, "request_line"):
            entry |= {"client": record.client_addr, "request": record.request_line, "status": record.status_code}
        else:
            entry["message"] = record.getMessage()
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def log_config(level: str = "INFO", as_json: bool = False) -> dict[str, Any]:
    """A logging.config.dictConfig for uvicorn's `log_config` (applied in every worker)."""
    level = level.upper()
    if as_json:
        formatters = {"default": {"()": JSONFormatter}, "access": {"()": JSONFormatter}}
    else:
        formatters = {"default": {"()": UTCFormatter, "fmt": TEXT_FORMAT},
                      "access": {"()": AccessFormatter, "fmt": ACCESS_FORMAT}}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": formatters,
        "handlers": {
            "default": {"formatter": "default", "class": "logging.StreamHandler", "stream": "ext://sys.stderr"},
            "access": {"formatter": "access", "class": "logging.StreamHandler", "stream": "ext://sys.stdout"},
        },
        "loggers": {
            "uvicorn": {"handlers": ["default"], "level": level, "propagate": False},
            "uvicorn.error": {"level": level},
            # Access lines are INFO: at WARNING and above they are not written.
            "uvicorn.access": {"handlers": ["access"], "level": level, "propagate": False},
            # The project's own loggers are named after their modules (logging.getLogger(__name__)).
            **{package: {"handlers": ["default"], "level": level, "propagate": False}
               for package in ("service", "model", "training", "triage")},
            "sqlalchemy": {"level": "WARNING"},
        },
    }


