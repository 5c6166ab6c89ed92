"""What the tasks repository hands to the layers above."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

MAINTAINER = "maintainer"
COLLABORATOR = "collaborator"
ROLES = (MAINTAINER, COLLABORATOR)  # highest first; the database's task_members_role_check agrees


@dataclass(frozen=True, slots=True)
class Task:
    id: uuid.UUID
    event_id: uuid.UUID
    parent_id: uuid.UUID | None
    title: str
    description: str
    duration_minutes: int
    allocated_minutes: int  # the sum of the direct subtasks' durations, computed when read
    completed: bool
    completed_at: datetime | None
    created_by: uuid.UUID | None
    my_role: str | None  # the caller's role, derived when read; None: none reaches the task
    created_at: datetime
    updated_at: datetime

    @property
    def minutes_free(self) -> int:
        return self.duration_minutes - self.allocated_minutes

    @classmethod
    def from_row(cls, row: Any) -> Task:
        return cls(
            id=row["id"],
            event_id=row["event_id"],
            parent_id=row["parent_id"],
            title=row["title"],
            description=row["description"],
            duration_minutes=row["duration_minutes"],
            allocated_minutes=row["allocated_minutes"],
            completed=row["completed"],
            completed_at=row["completed_at"],
            created_by=row["created_by"],
            my_role=row["my_role"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
        )


@dataclass(frozen=True, slots=True)
class RenderedTask:
    """A task as its API body (what ``schemas.task_json`` gives for a Task), rendered by the
    page statements of queries/tasks.sql so that a page of 200 tasks is passed through, not
    decoded and encoded again value by value."""

    id: uuid.UUID
    rendered: str  # one JSON object

    @classmethod
    def from_row(cls, row: Any) -> RenderedTask:
        return cls(row["id"], row["rendered"])


@dataclass(frozen=True, slots=True)
class TaskAccess:
    """The facts an access decision on a task needs, loaded in one query."""

    task: Task
    owner_id: uuid.UUID  # the event's owner


@dataclass(frozen=True, slots=True)
class Membership:
    """A role granted directly on a task."""

    task_id: uuid.UUID
    user_id: uuid.UUID
    role: str
    created_at: datetime

    @classmethod
    def from_row(cls, row: Any) -> Membership:
        return cls(row["task_id"], row["user_id"], row["role"], row["created_at"])


@dataclass(frozen=True, slots=True)
class Collaborator:
    """A user's role on a task, and the task that grants it (the task itself or an ancestor)."""

    user_id: uuid.UUID
    name: str
    role: str
    task_id: uuid.UUID

    @classmethod
    def from_row(cls, row: Any) -> Collaborator:
        return cls(row["user_id"], row["name"], row["role"], row["task_id"])
