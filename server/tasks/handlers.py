"""HTTP for tasks (API.md, "Task"): parse, call the use case, render."""

from __future__ import annotations

import uuid

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
    read_body,
    rendered_page_response,
)
from ..openapi import PAGE_QUERY, endpoint
from ..work import writing_for
from . import service
from .schemas import (
    AddCollaboratorSchema,
    CollaboratorPageSchema,
    CompletionSchema,
    CreateTaskSchema,
    MembershipSchema,
    TaskPageSchema,
    TaskProblemSchema,
    TaskSchema,
    UpdateTaskSchema,
    collaborator_json,
    collaborator_position,
    membership_json,
    task_json,
)

_create = CreateTaskSchema()
_update = UpdateTaskSchema()
_completion = CompletionSchema()
_add_collaborator = AddCollaboratorSchema()


@endpoint(
    summary="Create a task: top level (the event's owner) or a subtask (a maintainer of the "
    "parent); the creator becomes a maintainer",
    tag="tasks",
    body=CreateTaskSchema,
    responses={201: TaskSchema, 422: TaskProblemSchema},
    errors=(403, 404),
    description="A subtask must fit in its parent's free minutes: else 422 on duration_minutes "
    "with `parent_id` and `minutes_free` members.",
)
async def create_task(request: web.Request) -> web.Response:
    fields = await read_body(request, _create)
    async with writing_for(request) as work:
        task = await service.do_create_task(work, caller(request).id, fields)
    return json_response(task_json(task), status=201)


@endpoint(summary="A task (a member)", tag="tasks", responses={200: TaskSchema}, errors=(404,))
async def get_task(request: web.Request) -> web.Response:
    task_id = path_uuid(request, "task_id")
    task = await service.get_task(request.app[keys.db_key], caller(request).id, task_id)
    return json_response(task_json(task))


@endpoint(
    summary="Change or move a task (a maintainer); fields left out keep their value",
    tag="tasks",
    body=UpdateTaskSchema,
    responses={200: TaskSchema, 422: TaskProblemSchema},
    errors=(403, 404, 409),
    description="The duration rule holds: 422 on duration_minutes with `parent_id` and "
    "`minutes_free` (for a shrink below the subtasks: the task itself and the minimum).",
)
async def update_task(request: web.Request) -> web.Response:
    task_id = path_uuid(request, "task_id")
    changes = await read_body(request, _update)
    async with writing_for(request) as work:
        task = await service.do_update_task(work, caller(request).id, task_id, changes)
    return json_response(task_json(task))


@endpoint(
    summary="Delete a task with its subtree (a maintainer)",
    tag="tasks",
    responses={204: None},
    errors=(403, 404),
)
async def delete_task(request: web.Request) -> web.Response:
    task_id = path_uuid(request, "task_id")
    async with writing_for(request) as work:
        await service.do_delete_task(work, caller(request).id, task_id)
    return web.Response(status=204)


@endpoint(
    summary="Complete or reopen a task (a member)",
    tag="tasks",
    body=CompletionSchema,
    responses={200: TaskSchema},
    errors=(404,),
)
async def set_completion(request: web.Request) -> web.Response:
    task_id = path_uuid(request, "task_id")
    body = await read_body(request, _completion)
    async with writing_for(request) as work:
        task = await service.do_set_completion(work, caller(request).id, task_id, body["completed"])
    return json_response(task_json(task))


@endpoint(
    summary="Give a user a role on a task (a maintainer)",
    tag="tasks",
    body=AddCollaboratorSchema,
    responses={201: MembershipSchema},
    errors=(403, 404, 409),
)
async def add_collaborator(request: web.Request) -> web.Response:
    task_id = path_uuid(request, "task_id")
    body = await read_body(request, _add_collaborator)
    async with writing_for(request) as work:
        added = await service.do_add_collaborator(
            work, caller(request).id, task_id, body["user_id"], body["role"]
        )
    return json_response(membership_json(added), status=201)


@endpoint(
    summary="The users with a role on a task, inherited ones included (a member)",
    tag="tasks",
    responses={200: CollaboratorPageSchema},
    errors=(404, 422),
    query=PAGE_QUERY,
)
async def list_collaborators(request: web.Request) -> web.Response:
    task_id = path_uuid(request, "task_id")
    limit = page_limit(request)
    after = _after(request, "user")
    db = request.app[keys.db_key]
    found = await service.list_collaborators(db, caller(request).id, task_id, after, limit + 1)
    return json_response(page_of(found, limit, collaborator_json, collaborator_position))


@endpoint(
    summary="Remove a user's role on a task (a maintainer, or the user itself)",
    tag="tasks",
    responses={204: None},
    errors=(403, 404),
)
async def remove_collaborator(request: web.Request) -> web.Response:
    task_id = path_uuid(request, "task_id")
    user_id = path_uuid(request, "user_id")
    async with writing_for(request) as work:
        await service.do_remove_collaborator(work, caller(request).id, task_id, user_id)
    return web.Response(status=204)


@endpoint(
    summary="The tasks of an event that you can see, each with parent_id and my_role",
    tag="events",
    responses={200: TaskPageSchema},
    errors=(404, 422),
    query=PAGE_QUERY,
)
async def list_event_tasks(request: web.Request) -> web.Response:
    event_id = path_uuid(request, "event_id")
    limit = page_limit(request)
    after = _after(request, "id")
    db = request.app[keys.db_key]
    found = await service.list_event_tasks(db, caller(request).id, event_id, after, limit + 1)
    shown = found[:limit]
    more = {"id": str(shown[-1].id)} if len(found) > limit else None
    return rendered_page_response([t.rendered for t in shown], more)


def _after(request: web.Request, key: str) -> uuid.UUID | None:
    cursor = decode_cursor(request, {key: str})
    if cursor is None:
        return None
    try:
        return uuid.UUID(cursor[key])
    except ValueError:
        raise bad_cursor() from None
