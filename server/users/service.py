"""Use cases of users (API.md, "User"). No HTTP here."""

from __future__ import annotations

import uuid
from typing import Any

from ..db import Runner
from ..errors import NotFound, Unauthenticated
from ..policy import Action, enforce, user_decision
from .repository import UsersRepository


async def access_user(db: Runner, caller_id: uuid.UUID, user_id: uuid.UUID, action: Action) -> Any:
    """The user, if the caller may do ``action`` to it (users are visible to everyone; only
    the user changes itself)."""
    user = await UsersRepository(db).get(user_id)
    if user is None:
        if user_id == caller_id:  # the caller was deleted after its token was checked
            raise Unauthenticated()
        raise NotFound("no such user")
    enforce(user_decision(caller_id, user_id, action), "user", action)
    return user
