"""HTTP for /users and /auth/token (API.md, "Authentication", "User"): parse, call the use
case, render. Closing the streams of revoked tokens (streams.announce_revoked) needs the
app, so it happens here, after the use case has committed and returned their digests."""

from __future__ import annotations

from aiohttp import web

from .. import keys
from ..auth import caller
from ..http import client_address, json_response, path_uuid, read_body
from ..openapi import endpoint
from ..policy import Action
from ..streams import announce_revoked
from ..work import writing_for
from . import service
from .schemas import (
    CreateUserSchema,
    LoginSchema,
    NewUserSchema,
    TokenSchema,
    UpdateUserSchema,
    UserSchema,
    new_user_json,
    token_json,
    user_json,
)

_create = CreateUserSchema()
_update = UpdateUserSchema()
_login = LoginSchema()


@endpoint(
    summary="Register a user; answers the user with a first token",
    tag="users",
    public=True,
    body=CreateUserSchema,
    responses={201: NewUserSchema},
    errors=(409, 429),
)
async def create_user(request: web.Request) -> web.Response:
    fields = await read_body(request, _create)
    await service.admit_signup(request.app[keys.limits_key], client_address(request))
    password_hash = await service.hash_password(
        request.app[keys.passwords_key], fields.get("password")
    )
    async with writing_for(request) as work:
        new = await service.do_create_user(work, fields["name"], fields["email"], password_hash)
    return json_response(new_user_json(new), status=201)


@endpoint(
    summary="Log in with email and password; answers a new token",
    tag="users",
    public=True,
    body=LoginSchema,
    responses={201: TokenSchema},
    errors=(401, 429),
)
async def create_token(request: web.Request) -> web.Response:
    credentials = await read_body(request, _login)
    new = await service.do_login(
        request.app[keys.db_key],
        request.app[keys.passwords_key],
        request.app[keys.limits_key],
        credentials["email"],
        credentials["password"],
        client_address(request),
    )
    return json_response(token_json(new), status=201)


@endpoint(summary="Revoke the token this request carries", tag="users", responses={204: None})
async def delete_token(request: web.Request) -> web.Response:
    revoked = await service.do_logout(request.app[keys.db_key], caller(request))
    announce_revoked(request.app, revoked)
    return web.Response(status=204)


@endpoint(
    summary="A user (visible to every user)",
    tag="users",
    responses={200: UserSchema},
    errors=(404,),
)
async def get_user(request: web.Request) -> web.Response:
    user_id = path_uuid(request, "user_id")
    db = request.app[keys.db_key]
    user = await service.access_user(db, caller(request).id, user_id, Action.READ)
    return json_response(user_json(user))


@endpoint(
    summary="Change your name, email or password (a new password revokes your other tokens)",
    tag="users",
    body=UpdateUserSchema,
    responses={200: UserSchema},
    errors=(403, 404, 409),
)
async def update_user(request: web.Request) -> web.Response:
    user_id = path_uuid(request, "user_id")
    me = caller(request)
    user = await service.access_user(request.app[keys.db_key], me.id, user_id, Action.UPDATE)
    changes = await read_body(request, _update)
    password_hash = await service.hash_password(
        request.app[keys.passwords_key], changes.get("password")
    )
    async with writing_for(request) as work:
        updated, revoked = await service.do_update_user(work, me, user, changes, password_hash)
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
    user_id = path_uuid(request, "user_id")
    async with writing_for(request) as work:
        revoked = await service.do_delete_user(work, caller(request).id, user_id)
    announce_revoked(request.app, revoked)
    return web.Response(status=204)
