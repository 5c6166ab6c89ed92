"""marshmallow fields with the API's text rules (API.md, "Conventions")."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from marshmallow import ValidationError, fields


def example(value: object) -> dict[str, object]:
    """Field metadata giving /docs a real example instead of one generated from patterns."""
    return {"example": value}


class Text(fields.String):
    """A string of ``min_length..max_length`` characters that PostgreSQL can store.

    ``single_line`` is for names and titles: no CR or LF. Long texts keep every character,
    line breaks included, exactly as sent; nothing is trimmed. A NUL character is refused
    everywhere, since PostgreSQL text cannot hold it.
    """

    def __init__(
        self, *, min_length: int = 1, max_length: int, single_line: bool = False, **kwargs: Any
    ) -> None:
        # The same rules in the OpenAPI document (apispec copies these keywords as they are).
        metadata = {"minLength": min_length, "maxLength": max_length, **kwargs.pop("metadata", {})}
        no_nul, one_line = "^[^\\u0000]*$", "^[^\\r\\n\\u0000]*$"
        metadata.setdefault("pattern", one_line if single_line else no_nul)
        super().__init__(metadata=metadata, **kwargs)
        self.min_length = min_length
        self.max_length = max_length
        self.single_line = single_line

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        text = super()._deserialize(value, attr, data, **kwargs)
        if "\x00" in text:
            raise ValidationError("must not contain the NUL character (U+0000)")
        if self.single_line and ("\n" in text or "\r" in text):
            raise ValidationError("must be one line (no CR or LF)")
        if not self.min_length <= len(text) <= self.max_length:
            raise ValidationError(
                f"must be {self.min_length} to {self.max_length} characters long, got {len(text)}"
            )
        return text


# The driver (asyncpg) stores Python's first and last instants as -infinity and infinity, so
# an accepted timestamp lies strictly between them.
EARLIEST = datetime.min.replace(tzinfo=UTC)
LATEST = datetime.max.replace(tzinfo=UTC)
RANGE_MESSAGE = "must be after 0001-01-01T00:00:00Z and before 9999-12-31T23:59:59.999999Z"


def to_utc(moment: datetime) -> datetime:
    """``moment`` in UTC (naive is read as UTC); ValueError when UTC has no such instant or it
    is one the database would store as infinity."""
    try:
        utc = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+01:00 is before year 1 in UTC
        raise ValueError(RANGE_MESSAGE) from None
    if not EARLIEST < utc < LATEST:
        raise ValueError(RANGE_MESSAGE)
    return utc


class UtcDateTime(fields.DateTime):
    """An RFC 3339 timestamp; one without an offset is read as UTC. Always UTC once loaded,
    and within the range PostgreSQL stores as a finite timestamp (``to_utc``)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(format="iso", **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> datetime:
        if isinstance(value, str) and "\x00" in value:
            raise ValidationError("must not contain the NUL character (U+0000)")
        moment = super()._deserialize(value, attr, data, **kwargs)
        try:
            return to_utc(moment)
        except ValueError as exc:
            raise ValidationError(str(exc)) from None

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> str | None:
        if value is None:
            return None
        return str(value.astimezone(UTC).isoformat().replace("+00:00", "Z"))


class EmailAddress(fields.Email):
    """An email address as given (compared case-insensitively by the database)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        if isinstance(value, str) and "\x00" in value:
            raise ValidationError("must not contain the NUL character (U+0000)")
        text = str(super()._deserialize(value, attr, data, **kwargs))
        if len(text) > 320:
            raise ValidationError("must be at most 320 characters long")
        return text


class StrictBoolean(fields.Boolean):
    """JSON true or false only: not 1, "yes" or "true"."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> bool:
        if not isinstance(value, bool):
            raise ValidationError("must be true or false")
        return value


def _nul_path(value: Any, path: str) -> str | None:
    """Where the first NUL character sits in a JSON value (keys and strings), or None."""
    stack: list[tuple[Any, str]] = [(value, path)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return where
        elif isinstance(item, dict):
            for key, child in item.items():
                if "\x00" in key:
                    return where
                stack.append((child, f"{where}.{key}"))
        elif isinstance(item, list):
            stack.extend((child, f"{where}.{i}") for i, child in enumerate(item))
    return None


class JsonObject(fields.Dict):
    """Any JSON object that PostgreSQL's jsonb can hold: no NUL in any key or string, at any
    depth (jsonb refuses \\u0000 as text does)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        loaded = super()._deserialize(value, attr, data, **kwargs)
        where = _nul_path(loaded, attr or "")
        if where is not None:
            raise ValidationError(f"must not contain the NUL character (U+0000): {where}")
        return loaded


def rfc3339(value: datetime) -> str:
    """A timestamp as the API writes it: RFC 3339 in UTC, "2024-01-15T10:00:00Z"."""
    if value.tzinfo is not UTC:  # asyncpg already returns UTC: skip the conversion then
        value = value.astimezone(UTC)
    return value.isoformat()[:-6] + "Z"  # drop "+00:00"
