"""Handlers for /users and /auth/token."""

from __future__ import annotations

from typing import Any

import asyncpg
from aiohttp import web

from .. import keys
from ..auth import caller, caller_gone, new_token, unauthorized
from ..fields import rfc3339
from ..http import json_response, path_uuid, read_body
from ..openapi import endpoint
from ..policy import Action, enforce, user_decision
from ..streams import announce_revoked
from .repository import UsersRepository
from .schemas import (
    CreateUserSchema,
    LoginSchema,
    NewUserSchema,
    TokenSchema,
    UpdateUserSchema,
    UserSchema,
)

_create = CreateUserSchema()
_update = UpdateUserSchema()
_login = LoginSchema()
LOGIN_FAILED = "the email or the password is wrong"


def user_json(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "name": row["name"],
        "email": row["email"],
        "created_at": rfc3339(row["created_at"]),
        "updated_at": rfc3339(row["updated_at"]),
    }


async def _existing_user(request: web.Request, action: Action) -> asyncpg.Record:
    user_id = path_uuid(request, "user_id")
    row = await UsersRepository(request.app[keys.db_key]).get(user_id)
    if row is None:
        if user_id == caller(request).id:  # the caller was deleted after its token was checked
            raise caller_gone()
        raise web.HTTPNotFound()
    enforce(user_decision(caller(request).id, user_id, action), "user", action)
    return row


@endpoint(
    summary="Register a user; answers the user with a first token",
    tag="users",
    public=True,
    body=CreateUserSchema,
    responses={201: NewUserSchema},
    errors=(409,),
)
async def create_user(request: web.Request) -> web.Response:
    body = await read_body(request, _create)
    password = body.get("password")
    password_hash = await request.app[keys.passwords_key].hash(password) if password else None
    token, digest = new_token()
    async with request.app[keys.db_key].transaction() as tx:
        users = UsersRepository(tx)
        row = await users.create(body["name"], body["email"], password_hash)
        await users.add_token(row["id"], digest)
    return json_response({**user_json(row), "token": token}, status=201)


@endpoint(
    summary="Log in with email and password; answers a new token",
    tag="users",
    public=True,
    body=LoginSchema,
    responses={201: TokenSchema},
    errors=(401,),
)
async def create_token(request: web.Request) -> web.Response:
    body = await read_body(request, _login)
    db = request.app[keys.db_key]
    row = await UsersRepository(db).login_row(body["email"])
    ok = await request.app[keys.passwords_key].verify(
        row["password_hash"] if row else None, body["password"]
    )
    if row is None or not ok:
        raise unauthorized(LOGIN_FAILED)
    token, digest = new_token()
    # The password may have changed, or the user gone, while argon2 was verifying: then this
    # login is as if it had started after that (401), and no token outlives the change.
    if not await UsersRepository(db).add_login_token(row["id"], digest, row["password_hash"]):
        raise unauthorized(LOGIN_FAILED)
    return json_response({"token": token, "user": user_json(row)}, status=201)


@endpoint(summary="Revoke the token this request carries", tag="users", responses={204: None})
async def delete_token(request: web.Request) -> web.Response:
    digest = caller(request).token_hash
    await UsersRepository(request.app[keys.db_key]).revoke_token(digest)
    announce_revoked(request.app, [digest])
    return web.Response(status=204)


@endpoint(
    summary="A user (visible to every user)",
    tag="users",
    responses={200: UserSchema},
    errors=(404,),
)
async def get_user(request: web.Request) -> web.Response:
    return json_response(user_json(await _existing_user(request, Action.READ)))


@endpoint(
    summary="Change your name, email or password (a new password revokes your other tokens)",
    tag="users",
    body=UpdateUserSchema,
    responses={200: UserSchema},
    errors=(403, 404, 409),
)
async def update_user(request: web.Request) -> web.Response:
    row = await _existing_user(request, Action.UPDATE)
    body = await read_body(request, _update)
    password = body.get("password")
    password_hash = await request.app[keys.passwords_key].hash(password) if password else None
    me = caller(request)
    revoked: list[bytes] = []
    async with request.app[keys.db_key].transaction() as tx:
        users = UsersRepository(tx)
        updated = await users.update(
            row["id"], name=body.get("name"), email=body.get("email"), password_hash=password_hash
        )
        if updated is None:  # deleted meanwhile: only the user itself may update it
            raise caller_gone()
        if password_hash is not None:
            revoked = await users.revoke_other_tokens(row["id"], keep=me.token_hash)
    if revoked:
        announce_revoked(request.app, revoked)
    return json_response(user_json(updated))


@endpoint(
    summary="Delete your account: tokens revoked, owned events deleted, memberships "
    "removed, authored stories and comments kept without author",
    tag="users",
    responses={204: None},
    errors=(403, 404),
)
async def delete_user(request: web.Request) -> web.Response:
    row = await _existing_user(request, Action.DELETE)
    async with request.app[keys.db_key].transaction() as tx:
        revoked = await UsersRepository(tx).delete(row["id"])
    announce_revoked(request.app, revoked)
    return web.Response(status=204)
