"""HTTP for comments (API.md, "Comment"): parse, call the use case, render."""

from __future__ import annotations

from aiohttp import web

from .. import keys
from ..auth import caller
from ..http import (
    bad_cursor,
    decode_cursor,
    json_response,
    page_limit,
    page_of,
    path_uuid,
    rendered_page_response,
)
from ..http import read_body as read_json_body
from ..openapi import PAGE_QUERY, endpoint
from ..work import writing_for
from . import service
from .schemas import (
    CommentHistorySchema,
    CommentPageSchema,
    CommentSchema,
    CreateCommentSchema,
    UpdateCommentSchema,
    comment_json,
    version_json,
    version_position,
)

_create = CreateCommentSchema()
_update = UpdateCommentSchema()

MAX_POSITION = 2**63 - 1  # a bigint column
MAX_VERSION = 2**31 - 1  # an integer column


def _after(request: web.Request, maximum: int) -> int:
    """Where a page starts (a position or a version, 0..``maximum``): 0 without a cursor."""
    cursor = decode_cursor(request, {"after": int})
    after = 0 if cursor is None else int(cursor["after"])
    if not 0 <= after <= maximum:
        raise bad_cursor()
    return after


@endpoint(
    summary="Comment on a story, or reply to one of its comments (a member of its task)",
    tag="comments",
    body=CreateCommentSchema,
    responses={201: CommentSchema},
    errors=(404,),
    description="Members of the task are notified (comment, or mention for members the body "
    "mentions as <@USER_ID>). `parent_id` must be a comment of the same story (a deleted one "
    "too), else 422.",
)
async def create_comment(request: web.Request) -> web.Response:
    fields = await read_json_body(request, _create)
    async with writing_for(request) as work:
        comment = await service.do_create_comment(work, caller(request).id, fields)
    return json_response(comment_json(comment), status=201)


@endpoint(
    summary="A comment (a member); a deleted one as its placeholder",
    tag="comments",
    responses={200: CommentSchema},
    errors=(404,),
)
async def get_comment(request: web.Request) -> web.Response:
    comment_id = path_uuid(request, "comment_id")
    comment = await service.get_comment(request.app[keys.db_key], caller(request).id, comment_id)
    return json_response(comment_json(comment))


@endpoint(
    summary="Edit a comment (its author); the previous body stays in its history",
    tag="comments",
    body=UpdateCommentSchema,
    responses={200: CommentSchema},
    errors=(403, 404, 409),
    description="409 when the comment is deleted. A body left out or unchanged writes nothing.",
)
async def update_comment(request: web.Request) -> web.Response:
    comment_id = path_uuid(request, "comment_id")
    changes = await read_json_body(request, _update)
    async with writing_for(request) as work:
        comment = await service.do_edit_comment(work, caller(request).id, comment_id, changes)
    return json_response(comment_json(comment))


@endpoint(
    summary="Delete a comment (its author, or a maintainer of the task): it stays in the "
    "thread as a placeholder, with its replies",
    tag="comments",
    responses={204: None},
    errors=(403, 404),
)
async def delete_comment(request: web.Request) -> web.Response:
    comment_id = path_uuid(request, "comment_id")
    async with writing_for(request) as work:
        await service.do_delete_comment(work, caller(request).id, comment_id)
    return web.Response(status=204)


@endpoint(
    summary="A comment's history, oldest first: created, each edit with its body, deleted "
    "(a member)",
    tag="comments",
    responses={200: CommentHistorySchema},
    errors=(404, 422),
    query=PAGE_QUERY,
    description="Once the comment is deleted, no version shows its body.",
)
async def comment_history(request: web.Request) -> web.Response:
    comment_id = path_uuid(request, "comment_id")
    limit = page_limit(request)
    after = _after(request, MAX_VERSION)
    db = request.app[keys.db_key]
    found = await service.list_history(db, caller(request).id, comment_id, after, limit + 1)
    return json_response(page_of(found, limit, version_json, version_position))


@endpoint(
    summary="The comments of a story, oldest first, each with its parent_id; deleted ones as "
    "placeholders (a member)",
    tag="stories",
    responses={200: CommentPageSchema},
    errors=(404, 422),
    query=PAGE_QUERY,
)
async def list_story_comments(request: web.Request) -> web.Response:
    story_id = path_uuid(request, "story_id")
    limit = page_limit(request)
    after = _after(request, MAX_POSITION)
    db = request.app[keys.db_key]
    found = await service.list_story_comments(db, caller(request).id, story_id, after, limit + 1)
    shown = found[:limit]
    more = {"after": shown[-1].position} if len(found) > limit else None
    return rendered_page_response([c.rendered for c in shown], more)
