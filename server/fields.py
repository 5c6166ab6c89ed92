"""marshmallow fields with the API's text rules (API.md, "Conventions")."""

from __future__ import annotations

from typing import Any

from marshmallow import ValidationError, fields


class Text(fields.String):
    """A string of ``min_length..max_length`` characters that PostgreSQL can store.

    ``single_line`` is for names and titles: no CR or LF. Long texts keep every character,
    line breaks included, exactly as sent; nothing is trimmed. A NUL character is refused
    everywhere, since PostgreSQL text cannot hold it.
    """

    def __init__(
        self, *, min_length: int = 1, max_length: int, single_line: bool = False, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
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
