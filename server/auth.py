"""Who is calling: API tokens, passwords, and the authentication middleware.

Tokens are 256-bit random strings; only their SHA-256 digest is stored, so a leaked table
grants nothing. One indexed query per request resolves a token to its caller
(UsersRepository.caller_by_token). Passwords are hashed with argon2id (argon2-cffi) in a
worker thread, so hashing never stalls the loop. The use cases that issue and revoke tokens
are in users/service.py.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets

from aiohttp import web
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from . import keys
from .db import Runner
from .errors import ApiError, Handler, Unauthenticated
from .openapi import endpoint_of
from .users.models import Caller
from .users.repository import UsersRepository

TOKEN_BYTES = 32  # 256 bits


def new_token() -> tuple[str, bytes]:
    token = secrets.token_urlsafe(TOKEN_BYTES)
    return token, token_digest(token)


def token_digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


class Passwords:
    def __init__(self) -> None:
        self._hasher = PasswordHasher()
        # Checked against when the email is unknown, so both failures take the same time.
        self._dummy = self._hasher.hash(secrets.token_urlsafe(16))
        self.verifications = 0  # argon2 verifications done: one per login attempt, always

    async def hash(self, password: str) -> str:
        return await asyncio.to_thread(self._hasher.hash, password)

    async def verify(self, password_hash: str | None, password: str) -> bool:
        def check() -> bool:
            try:
                return self._hasher.verify(password_hash or self._dummy, password)
            except (VerificationError, InvalidHashError):
                return False

        self.verifications += 1
        ok = await asyncio.to_thread(check)
        return ok and password_hash is not None


def unauthorized(detail: str) -> ApiError:
    """The 401 for a request whose Authorization header is missing or malformed."""
    return ApiError(401, detail, headers={"WWW-Authenticate": "Bearer"})


def _token_from(request: web.Request, allow_query: bool) -> str | None:
    header = request.headers.get("Authorization")
    if header is not None:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise unauthorized("the Authorization header must be 'Bearer <token>'")
        return value.strip()
    if allow_query:
        return request.query.get("access_token") or None
    return None


async def authenticate(db: Runner, token: str) -> Caller | None:
    """The caller a token names; None for one unknown, revoked or too long to be ours."""
    if len(token) > 256:
        return None
    return await UsersRepository(db).caller_by_token(token_digest(token))


def caller(request: web.Request) -> Caller:
    """The authenticated caller of a non-public route."""
    return request[keys.caller_key]


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    match = request.match_info
    if match.http_exception is not None or request.method == "OPTIONS":
        return await handler(request)  # 404/405 and CORS preflights need no token
    info = endpoint_of(match.handler)
    resource = match.route.resource
    if info is None and resource is not None and resource.canonical.startswith("/docs"):
        return await handler(request)  # Swagger UI's static files
    if info is not None and info.public:
        return await handler(request)
    request[keys.caller_key] = await require_caller(request, allow_query=bool(info and info.stream))
    return await handler(request)


async def require_caller(request: web.Request, *, allow_query: bool = False) -> Caller:
    """The caller the request's token names, or 401."""
    token = _token_from(request, allow_query=allow_query)
    if token is None:
        raise unauthorized("this route needs 'Authorization: Bearer <token>'")
    found = await authenticate(request.app[keys.db_key], token)
    if found is None:
        raise Unauthenticated()
    return found
