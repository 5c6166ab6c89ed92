"""Use cases of users and tokens (API.md, "Authentication", "User"). No HTTP here: handlers
parse and render, these decide and write, and raise the domain errors of errors.py.

``access_user`` loads the user and enforces the rule; ``do_*`` write and return what they
wrote. Passwords are hashed and verified with argon2 (auth.Passwords, tens of milliseconds in
a worker thread) outside any transaction, so no pooled connection waits on one: a handler
hashes a new password with ``hash_password`` before it opens its Work. Logins and
registrations are counted against the abuse limits (limits.py) before any of that: past a
limit, TooManyRequests, and no password is hashed or verified.
"""

from __future__ import annotations

import uuid
from typing import Any

from ..auth import Passwords, new_token
from ..db import Runner
from ..errors import Conflict, NotFound, TooManyRequests, Unauthenticated
from ..limits import Limits, Taken
from ..policy import Action, enforce, user_decision
from ..work import Work
from .models import Caller, NewToken, User
from .repository import UsersRepository

EMAIL_TAKEN = "a user with this email already exists"  # as errors.CONSTRAINTS words it
LOGIN_FAILED = "the email or the password is wrong"  # one answer for every failure
TOO_MANY_LOGINS = (
    "too many failed logins for this email or from this address; try again in {} seconds"
)
TOO_MANY_SIGNUPS = "too many registrations from this address; try again in {} seconds"


def refuse(taken: Taken, message: str) -> None:
    if taken.retry_after is not None:
        raise TooManyRequests(message.format(taken.retry_after), retry_after=taken.retry_after)


async def access_user(db: Runner, caller_id: uuid.UUID, user_id: uuid.UUID, action: Action) -> User:
    """The user, if the caller may do ``action`` to it (users are visible to everyone; only
    the user changes itself): NotFound for no such user, Forbidden for another user's change,
    Unauthenticated when the caller itself was deleted after its token was checked."""
    user = await UsersRepository(db).get(user_id)
    if user is None:
        if user_id == caller_id:
            raise Unauthenticated()
        raise NotFound("no such user")
    enforce(user_decision(caller_id, user_id, action), "user", action)
    return user


async def hash_password(passwords: Passwords, password: str | None) -> str | None:
    """The argon2 hash of a new password; None when none is given."""
    return await passwords.hash(password) if password else None


async def admit_signup(limits: Limits, address: str) -> None:
    """Count a registration from ``address``; TooManyRequests past SIGNUP_LIMIT_PER_ADDRESS.
    Every registration that gets this far counts, taken or not: each costs a password hash."""
    refuse(await limits.signup(address), TOO_MANY_SIGNUPS)


async def do_create_user(work: Work, name: str, email: str, password_hash: str | None) -> NewToken:
    """A new user and its first token; Conflict when the email is taken, in any case."""
    users = UsersRepository(work.tx)
    user = await users.create(name, email, password_hash)
    if user is None:
        raise Conflict(EMAIL_TAKEN)
    token, digest = new_token()
    await users.add_token(user.id, digest)
    return NewToken(token, user)


async def do_login(
    db: Runner, passwords: Passwords, limits: Limits, email: str, password: str, address: str
) -> NewToken:
    """A new token for the user with this email and password. Every failure is the same
    Unauthenticated after one argon2 verification (a dummy hash for an unknown email or a
    user without a password), so neither the answer nor its time tells them apart.

    Each attempt takes a count for its email (any case) and for the client's ``address``
    before anything is verified, so of racing attempts no more than the limit get verified;
    past either limit, TooManyRequests and no verification. A failed attempt keeps its counts
    until the window ends; a successful one gives its own back and resets nothing: a reset
    would hand whoever guesses at an account a fresh budget each time its owner logs in, and
    a reset of the address would let one valid account of an attacker's own clear its
    address's count between guesses at others. An unknown email counts like a known one.

    The token is stored in one statement only if the password hash is still the one verified:
    a password change or a deletion that won the race makes this login fail as if it had
    started after it, and no token outlives the change."""
    taken = await limits.login(email, address)
    refuse(taken, TOO_MANY_LOGINS)
    users = UsersRepository(db)
    login = await users.login(email)
    ok = await passwords.verify(login.password_hash if login else None, password)
    if not ok or login is None or login.password_hash is None:
        raise Unauthenticated(LOGIN_FAILED)
    token, digest = new_token()
    if not await users.add_login_token(login.user.id, digest, login.password_hash):
        raise Unauthenticated(LOGIN_FAILED)
    await limits.give_back(taken)
    return NewToken(token, login.user)


async def do_update_user(
    work: Work,
    caller: Caller,
    user: User,
    changes: dict[str, Any],
    password_hash: str | None,
) -> tuple[User, list[bytes]]:
    """A partial update of ``user`` (from ``access_user(..., Action.UPDATE)``): the user as
    changed, and the digests of the tokens revoked. A new password (``password_hash``)
    revokes every token of the user but the caller's."""
    users = UsersRepository(work.tx)
    email = changes.get("email")
    if email is not None and await users.email_taken(email, other_than=user.id):
        raise Conflict(EMAIL_TAKEN)
    updated = await users.update(
        user.id, name=changes.get("name"), email=email, password_hash=password_hash
    )
    if updated is None:  # deleted meanwhile: only the user itself may update it
        raise Unauthenticated()
    revoked: list[bytes] = []
    if password_hash is not None:
        revoked = await users.revoke_other_tokens(user.id, keep=caller.token_hash)
    return updated, revoked


async def do_delete_user(work: Work, caller_id: uuid.UUID, user_id: uuid.UUID) -> list[bytes]:
    """Delete the caller's own account (its tokens and owned events go with it); returns the
    digests of the tokens revoked."""
    user = await access_user(work.tx, caller_id, user_id, Action.DELETE)
    return await UsersRepository(work.tx).delete(user.id)


async def do_logout(db: Runner, caller: Caller) -> list[bytes]:
    """Revoke the token the caller used (one statement: no transaction); returns its digest."""
    await UsersRepository(db).revoke_token(caller.token_hash)
    return [caller.token_hash]
