"""Structured logging with token redaction on every handler, uvicorn's access log included.

Plain-text lines escape control characters (`escape_controls`), so a client-supplied value (a
token's `sub`, a path, a conversation id) cannot end a log line or forge the next one; JSON lines
are safe by their encoding."""

from __future__ import annotations

import json
import logging
import re
from typing import Any

# token=... in URLs, asp.token.<jwt> subprotocols, Bearer headers, and bare JWTs.
_PATTERNS = [
    (re.compile(r"(token=)[^&\s\"']+"), r"\1[REDACTED]"),
    (re.compile(r"(asp\.token\.)[A-Za-z0-9._~+/=-]+"), r"\1[REDACTED]"),
    (re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+"), r"\1[REDACTED]"),
    (re.compile(r"eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"), "[REDACTED-JWT]"),
]


# C0 and C1 controls, DEL, and the Unicode line and paragraph separators: all can break a line.
_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _escaped(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape_controls(text: str) -> str:
    """`text` with every control character written as an escape (`\\n` as the four characters
    `\\x0a`), so it stays on one log line whatever a client put in it."""
    return _CONTROLS.sub(_escaped, text)


# What each of _PATTERNS starts with: a text that has none of these needs no pattern tried (most
# lines; four substitutions cost a log line about as much as writing it).
_MAY_HOLD_TOKEN = re.compile(r"token=|asp\.token\.|(?i:bearer)\s|eyJ")


def redact(text: str) -> str:
    """`text` with every token in it replaced by a [REDACTED] marker."""
    if _MAY_HOLD_TOKEN.search(text) is None:
        return text
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class RedactTokens(logging.Filter):
    """Rewrites each record's final message so no token reaches any handler."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message or record.args:
            record.msg, record.args = cleaned, None
        return True


# uvicorn's and websockets' line per WebSocket handshake and close, which they log as INFO on
# "uvicorn.error" (uvicorn logs HTTP requests on "uvicorn.access" but WebSocket handshakes there,
# for historical reasons): the WebSocket share of the access log. Their templates, as logged.
CONNECTION_LINES = frozenset(
    {
        '%s - "WebSocket %s" [accepted]',  # uvicorn: the handshake accepted
        '%s - "WebSocket %s" 403',  # uvicorn: the app closed before accepting
        '%s - "WebSocket %s" %d',  # uvicorn: the app answered the handshake with a status
        "connection open",  # websockets: the 101 sent
        "connection rejected (%d %s)",  # websockets: a status other than 101 after accept
        "HTTP response sent (%d %s)",  # websockets: a status other than 101
        "connection closed",  # websockets: the connection ended
    }
)


class NoConnectionLines(logging.Filter):
    """Drops the per-connection access lines of uvicorn and websockets (`CONNECTION_LINES`, INFO
    and below) with the access log off: a line per handshake was most of the logging cost of a
    connect (bench: connects/s). Warnings and errors of the same loggers pass."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno > logging.INFO or record.msg not in CONNECTION_LINES


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        context = getattr(record, "asp", None)
        if isinstance(context, dict):
            payload.update(context)
        if record.exc_info:
            payload["exception"] = redact(self.formatException(record.exc_info))
        return json.dumps(payload, default=str)  # redacted field by field: redacting JSON text could break it


class ContextFormatter(logging.Formatter):
    """Plain text with the record's ASP context (user, session, run) appended as key=value.

    The message and each context value have their control characters escaped (`escape_controls`):
    one record is one line, whatever a client supplied. A traceback keeps its own lines."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = escape_controls(record.message)
        return super().formatMessage(record)

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        context = getattr(record, "asp", None)
        if isinstance(context, dict) and context:
            text += " " + " ".join(f"{key}={escape_controls(str(value))}" for key, value in context.items())
        return redact(text)


def logging_config(*, json_lines: bool, access_log: bool) -> dict[str, Any]:
    """A dictConfig for our loggers and uvicorn's, every handler behind the redaction filter.

    `access_log` False: no line per HTTP request (uvicorn.access) and none per WebSocket handshake
    or close (`NoConnectionLines` on uvicorn.error); the server's own lines (asp.*) are kept."""
    formatter = "json" if json_lines else "plain"
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"redact": {"()": RedactTokens}, "no_connection_lines": {"()": NoConnectionLines}},
        "formatters": {
            "json": {"()": JsonFormatter},
            "plain": {"()": ContextFormatter, "format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
        },
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
                "formatter": formatter,
                "filters": ["redact"],
            }
        },
        "loggers": {
            "asp": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
            "uvicorn": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
            "uvicorn.error": {
                "handlers": ["stderr"],
                "level": "INFO",
                "propagate": False,
                "filters": [] if access_log else ["no_connection_lines"],
            },
            "uvicorn.access": {
                "handlers": ["stderr"] if access_log else [],
                "level": "INFO",
                "propagate": False,
            },
        },
        "root": {"handlers": ["stderr"], "level": "WARNING"},
    }


def get_logger(name: str) -> logging.Logger:
    return logging.getLogger(f"asp.{name}")
