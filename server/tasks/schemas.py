"""Schemas for tasks (API.md, "Task"): marshmallow in and out, and the serializers beside the
schemas they produce (tests/conftest.py checks every response body against the schema that
/openapi.json documents for it)."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, ValidationError, fields, validate

from ..fields import StrictBoolean, Text, UtcDateTime, example, rfc3339
from .models import ROLES, Collaborator, Membership, Task

MAX_MINUTES = 525_600  # a year; the database's tasks_duration_minutes_check agrees


class Minutes(fields.Integer):
    """A JSON integer 1..525600: not a float, a string or a boolean."""

    def __init__(self, **kwargs: Any) -> None:
        metadata = {"minimum": 1, "maximum": MAX_MINUTES, **kwargs.pop("metadata", {})}
        super().__init__(strict=True, metadata=metadata, **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValidationError("must be an integer")
        if not 1 <= value <= MAX_MINUTES:
            raise ValidationError(f"must be from 1 to {MAX_MINUTES}")
        return value


class TaskSchema(Schema):
    id = fields.UUID(required=True)
    event_id = fields.UUID(required=True)
    parent_id = fields.UUID(required=True, allow_none=True)
    title = fields.String(required=True)
    description = fields.String(required=True)
    duration_minutes = fields.Integer(required=True)
    allocated_minutes = fields.Integer(
        required=True, metadata={"description": "the sum of the direct subtasks' durations"}
    )
    minutes_free = fields.Integer(
        required=True, metadata={"description": "duration_minutes - allocated_minutes"}
    )
    completed = fields.Boolean(required=True)
    completed_at = UtcDateTime(required=True, allow_none=True)
    created_by = fields.UUID(required=True, allow_none=True)
    my_role = fields.String(required=True, validate=validate.OneOf(ROLES))
    created_at = UtcDateTime(required=True)
    updated_at = UtcDateTime(required=True)


class TaskProblemSchema(Schema):
    """A 422 of a task write: a breach of the duration rule also names the parent and its
    free minutes (for a shrinking task: the task itself and the minimum it can shrink to)."""

    type = fields.String(required=True)
    title = fields.String(required=True)
    status = fields.Integer(required=True)
    detail = fields.String(required=True)
    errors = fields.Dict(keys=fields.String(), values=fields.List(fields.String()))
    parent_id = fields.UUID(metadata={"description": "duration rule: the task whose room ran out"})
    minutes_free = fields.Integer(
        metadata={"description": "duration rule: the minutes still free there (shrink: minimum)"}
    )


class TaskPageSchema(Schema):
    items = fields.List(fields.Nested(TaskSchema), required=True)
    next = fields.String(required=True, allow_none=True)


class CreateTaskSchema(Schema):
    event_id = fields.UUID(required=True, metadata=example("5f0c8a9e-3b1d-4c52-9d7e-2a4b6c8d0e1f"))
    parent_id = fields.UUID(
        allow_none=True,
        load_default=None,
        metadata={"description": "a task of the same event; left out or null: top level"},
    )
    title = Text(required=True, max_length=200, single_line=True, metadata=example("Agenda"))
    description = Text(
        min_length=0, max_length=10_000, load_default="", metadata=example("Draft the agenda")
    )
    duration_minutes = Minutes(required=True, metadata=example(30))


class UpdateTaskSchema(Schema):
    parent_id = fields.UUID(
        allow_none=True, metadata={"description": "moves the task; null: to the top level"}
    )
    title = Text(max_length=200, single_line=True, metadata=example("Agenda (final)"))
    description = Text(min_length=0, max_length=10_000, metadata=example("Agreed on Monday"))
    duration_minutes = Minutes(metadata=example(45))


class CompletionSchema(Schema):
    completed = StrictBoolean(required=True, metadata=example(True))


class AddCollaboratorSchema(Schema):
    user_id = fields.UUID(required=True, metadata=example("0b7e7dd2-6d6a-4c1e-9a44-6f7f1b1d7a10"))
    role = fields.String(
        required=True, validate=validate.OneOf(ROLES), metadata=example("collaborator")
    )


class MembershipSchema(Schema):
    task_id = fields.UUID(required=True)
    user_id = fields.UUID(required=True)
    role = fields.String(required=True, validate=validate.OneOf(ROLES))
    created_at = UtcDateTime(required=True)


class CollaboratorSchema(Schema):
    user_id = fields.UUID(required=True)
    name = fields.String(required=True)
    role = fields.String(required=True, validate=validate.OneOf(ROLES))
    task_id = fields.UUID(
        required=True,
        metadata={"description": "the task that grants the role: this one or an ancestor"},
    )


class CollaboratorPageSchema(Schema):
    items = fields.List(fields.Nested(CollaboratorSchema), required=True)
    next = fields.String(required=True, allow_none=True)


def task_json(task: Task) -> dict[str, Any]:
    """A Task as TaskSchema documents it."""
    return {
        "id": str(task.id),
        "event_id": str(task.event_id),
        "parent_id": str(task.parent_id) if task.parent_id else None,
        "title": task.title,
        "description": task.description,
        "duration_minutes": task.duration_minutes,
        "allocated_minutes": task.allocated_minutes,
        "minutes_free": task.minutes_free,
        "completed": task.completed,
        "completed_at": rfc3339(task.completed_at) if task.completed_at else None,
        "created_by": str(task.created_by) if task.created_by else None,
        "my_role": task.my_role,
        "created_at": rfc3339(task.created_at),
        "updated_at": rfc3339(task.updated_at),
    }


def membership_json(m: Membership) -> dict[str, Any]:
    return {
        "task_id": str(m.task_id),
        "user_id": str(m.user_id),
        "role": m.role,
        "created_at": rfc3339(m.created_at),
    }


def collaborator_json(c: Collaborator) -> dict[str, Any]:
    return {"user_id": str(c.user_id), "name": c.name, "role": c.role, "task_id": str(c.task_id)}


def collaborator_position(c: Collaborator) -> dict[str, str]:
    return {"user": str(c.user_id)}
