"""HTTP for stories (API.md, "Story"): parse, call the use case, render. Every answer that
carries a story carries its revision as ``ETag: "<revision>"``; ``If-Match`` is read here."""

from __future__ import annotations

import re
import uuid

from aiohttp import web

from .. import keys
from ..auth import caller
from ..errors import ApiError, Invalid
from ..http import bad_cursor, decode_cursor, json_response, page_limit, page_of, path_uuid
from ..http import read_body as read_json_body
from ..openapi import PAGE_QUERY, Query, endpoint
from ..work import writing_for
from . import service
from .models import MAX_CONTENT_BYTES, Story
from .schemas import (
    MAX_REVISION,
    CreateStorySchema,
    DiffSchema,
    EditContentSchema,
    EditedStorySchema,
    RevisionPageSchema,
    RevisionSchema,
    StoryPageSchema,
    StoryProblemSchema,
    StorySchema,
    UpdateStorySchema,
    revision_change_json,
    revision_json,
    revision_position,
    story_json,
    story_position,
)

_create = CreateStorySchema()
_update = UpdateStorySchema()
_edit = EditContentSchema()

# The body limit of the routes that take content: JSON may escape a character into up to six
# bytes (\u001f), so content that fits its 512 KiB may take six times that on the wire.
STORY_BODY_BYTES = 6 * MAX_CONTENT_BYTES + 64 * 1024

REVISION_NUMBER = {"type": "integer", "minimum": 1}
IF_MATCH = (
    'If-Match: "<revision>" (or a list, or *) makes the change only if the story is still at '
    "that revision: else 412 with `current_revision`."
)


def _with_etag(body: dict[str, object], story: Story, status: int = 200) -> web.Response:
    return json_response(body, status=status, headers={"ETag": f'"{story.revision}"'})


def _is_revision(text: str) -> bool:
    """Whether ``text`` is a revision number as written in a path or an ETag: ASCII digits,
    1..2**31-1 (checked on the length first, so a long string is never converted)."""
    return text.isascii() and text.isdigit() and len(text) <= 10 and 1 <= int(text) <= MAX_REVISION


# One entity tag of If-Match: "..." or W/"..." (RFC 9110 8.8.3), blanks around it.
_ENTITY_TAG = re.compile(r'[ \t]*(W/)?"([\x21\x23-\x7e\x80-\xff]*)"[ \t]*')


def if_match(request: web.Request) -> frozenset[int] | None:
    """The revisions If-Match names (None when it is absent or ``*``). A weak tag or one that
    is not a revision number names nothing, so it never matches (412); a header that is not
    a list of entity tags is 400."""
    values = request.headers.getall("If-Match", [])
    if not values:
        return None
    text = ", ".join(values)
    if text.strip() == "*":
        return None
    revisions: set[int] = set()
    position = 0
    while True:
        found = _ENTITY_TAG.match(text, position)
        if found is None:
            raise ApiError(400, 'If-Match must be * or a list of entity tags such as "3"')
        weak, tag = found.groups()
        if not weak and _is_revision(tag) and not tag.startswith("0"):  # "03" is not "3"
            revisions.add(int(tag))
        position = found.end()
        if position == len(text):
            return frozenset(revisions)
        if text[position] != ",":
            raise ApiError(400, 'If-Match must be * or a list of entity tags such as "3"')
        position += 1


def path_revision(request: web.Request) -> int:
    """A revision number in the path; anything but a positive integer is 404, like an unknown
    revision."""
    raw = request.match_info["revision"]
    if _is_revision(raw):
        return int(raw)
    raise ApiError(404, f"no resource at {request.path}")


def query_revision(request: web.Request, name: str) -> int:
    """A revision number in the query: 422 naming it unless it is a positive integer (one
    beyond any revision is answered 404 by the use case, as an unknown revision)."""
    raw = request.query.get(name)
    if raw is None or not (raw.isascii() and raw.isdigit()) or not raw.strip("0"):
        raise Invalid({name: ["must be a revision number (an integer from 1)"]})
    return int(raw) if _is_revision(raw) else MAX_REVISION + 1


@endpoint(
    summary="Create a story of a task (a member of the task), at revision 1",
    tag="stories",
    body=CreateStorySchema,
    responses={201: StorySchema},
    errors=(404,),
    description="Members of the task are notified (story_update, or mention for members the "
    "content mentions as <@USER_ID>).",
)
async def create_story(request: web.Request) -> web.Response:
    fields = await read_json_body(request, _create, STORY_BODY_BYTES)
    async with writing_for(request) as work:
        story = await service.do_create_story(work, caller(request).id, fields)
    return _with_etag(story_json(story), story, status=201)


@endpoint(summary="A story (a member)", tag="stories", responses={200: StorySchema}, errors=(404,))
async def get_story(request: web.Request) -> web.Response:
    story_id = path_uuid(request, "story_id")
    story = await service.get_story(request.app[keys.db_key], caller(request).id, story_id)
    return _with_etag(story_json(story), story)


@endpoint(
    summary="Change a story's title or content (a member); fields left out keep their value",
    tag="stories",
    body=UpdateStorySchema,
    responses={200: StorySchema, 412: StoryProblemSchema},
    errors=(400, 404),
    description=IF_MATCH + " A change of title or content is a new revision; none otherwise.",
)
async def update_story(request: web.Request) -> web.Response:
    story_id = path_uuid(request, "story_id")
    expected = if_match(request)
    changes = await read_json_body(request, _update, STORY_BODY_BYTES)
    async with writing_for(request) as work:
        story = await service.do_update_story(work, caller(request).id, story_id, changes, expected)
    return _with_etag(story_json(story), story)


def _base_revision(request: web.Request, body: dict[str, object]) -> int | None:
    """The revision a content edit started from: ``base_revision``, or If-Match's one
    revision; both given must agree. ``service.NO_REVISION`` when If-Match names none (a weak
    or non-numeric tag): it can never match, which the use case says (412) once it knows
    the caller may see the story."""
    named = if_match(request)
    from_header: int | None = None
    if named is not None:
        if not named:
            return service.NO_REVISION
        if len(named) > 1:
            raise ApiError(400, "If-Match on a content edit names one revision")
        (from_header,) = named
    from_body = body.get("base_revision")
    if from_header is not None and from_body is not None and from_header != from_body:
        raise Invalid({"base_revision": [f"differs from If-Match ({from_header})"]})
    base = from_body if from_body is not None else from_header
    assert base is None or isinstance(base, int)
    return base


@endpoint(
    summary="Replace a story's content (a member), over a base revision, merging if asked",
    tag="stories",
    body=EditContentSchema,
    responses={200: EditedStorySchema, 409: StoryProblemSchema, 412: StoryProblemSchema},
    errors=(400, 404),
    description="`base_revision` (or If-Match) is the revision the edit started from; when "
    "the story has moved on it is 409 with `current_revision`, unless `merge` is true: then "
    "the edit is merged three ways, line by line, with what was written since (`merged: "
    "true`), or, when changes of both sides overlap or touch, 409 with `conflicts` and "
    "nothing written. Unchanged content makes no revision.",
)
async def edit_content(request: web.Request) -> web.Response:
    story_id = path_uuid(request, "story_id")
    body = await read_json_body(request, _edit, STORY_BODY_BYTES)
    base = _base_revision(request, body)
    async with writing_for(request) as work:
        story, merged = await service.do_edit_content(
            work,
            caller(request).id,
            story_id,
            body["content"],
            base,
            body["merge"],
            request.app[keys.snapshots_key],
        )
    return _with_etag({**story_json(story), "merged": merged}, story)


@endpoint(
    summary="Delete a story with its history (its author, or a maintainer of its task)",
    tag="stories",
    responses={204: None},
    errors=(403, 404),
)
async def delete_story(request: web.Request) -> web.Response:
    story_id = path_uuid(request, "story_id")
    async with writing_for(request) as work:
        await service.do_delete_story(work, caller(request).id, story_id)
    return web.Response(status=204)


@endpoint(
    summary="The stories of a task (a member), by id",
    tag="tasks",
    responses={200: StoryPageSchema},
    errors=(404, 422),
    query=PAGE_QUERY,
)
async def list_task_stories(request: web.Request) -> web.Response:
    task_id = path_uuid(request, "task_id")
    limit = page_limit(request)
    cursor = decode_cursor(request, {"id": str})
    after = None
    if cursor is not None:
        try:
            after = uuid.UUID(cursor["id"])
        except ValueError:
            raise bad_cursor() from None
    db = request.app[keys.db_key]
    found = await service.list_task_stories(db, caller(request).id, task_id, after, limit + 1)
    return json_response(page_of(found, limit, story_json, story_position))


@endpoint(
    summary="Every revision of a story, oldest first, each with the unified diff of its "
    "content from the one before (a member)",
    tag="stories",
    responses={200: RevisionPageSchema},
    errors=(404, 422),
    query=PAGE_QUERY,
)
async def list_revisions(request: web.Request) -> web.Response:
    story_id = path_uuid(request, "story_id")
    limit = page_limit(request)
    cursor = decode_cursor(request, {"after": int})
    after = 0 if cursor is None else cursor["after"]
    if not 0 <= after <= MAX_REVISION:
        raise bad_cursor()
    db = request.app[keys.db_key]
    found = await service.list_revisions(db, caller(request).id, story_id, after, limit + 1)
    return json_response(page_of(found, limit, revision_change_json, revision_position))


@endpoint(
    summary="The exact title and content of one revision of a story (a member)",
    tag="stories",
    responses={200: RevisionSchema},
    errors=(404,),
)
async def get_revision(request: web.Request) -> web.Response:
    story_id = path_uuid(request, "story_id")
    revision = path_revision(request)
    db = request.app[keys.db_key]
    snapshots = request.app[keys.snapshots_key]
    found = await service.get_revision(db, caller(request).id, story_id, revision, snapshots)
    return json_response(revision_json(found))


@endpoint(
    summary="The unified diff of a story's content between two revisions (a member)",
    tag="stories",
    responses={200: DiffSchema},
    errors=(404, 422),
    query={
        "from": Query("a revision number", REVISION_NUMBER, required=True),
        "to": Query("a revision number (may be before from)", REVISION_NUMBER, required=True),
    },
)
async def story_diff(request: web.Request) -> web.Response:
    story_id = path_uuid(request, "story_id")
    first, second = query_revision(request, "from"), query_revision(request, "to")
    db = request.app[keys.db_key]
    snapshots = request.app[keys.snapshots_key]
    text = await service.diff(db, caller(request).id, story_id, first, second, snapshots)
    return json_response({"from": first, "to": second, "diff": text})


@endpoint(
    summary="Restore a revision: a new revision with exactly its title and content (a member)",
    tag="stories",
    responses={200: StorySchema, 412: StoryProblemSchema},
    errors=(400, 404),
    description=IF_MATCH + " No new revision when the story already has that title and content.",
)
async def restore_revision(request: web.Request) -> web.Response:
    story_id = path_uuid(request, "story_id")
    revision = path_revision(request)
    expected = if_match(request)
    async with writing_for(request) as work:
        story = await service.do_restore(work, caller(request).id, story_id, revision, expected)
    return _with_etag(story_json(story), story)
