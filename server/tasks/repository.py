"""SQL for tasks: queries/tasks.sql. Returns the dataclasses of models.py, never driver rows."""

from __future__ import annotations

import uuid
from typing import Any

from ..db import Runner
from .models import Collaborator, Membership, RenderedTask, Task, TaskAccess

FIRST = uuid.UUID(int=0)  # keyset position before every id


class TasksRepository:
    def __init__(self, db: Runner) -> None:
        self.db = db

    async def access(self, task_id: uuid.UUID, caller_id: uuid.UUID) -> TaskAccess | None:
        """The task with the caller's role and its rollup, and the event's owner; None when no
        such task."""
        row = await self.db.one("tasks.get_task_access", task_id=task_id, caller_id=caller_id)
        if row is None:
            return None
        return TaskAccess(Task.from_row(row), row["owner_id"])

    async def lock_access(self, task_id: uuid.UUID, caller_id: uuid.UUID) -> TaskAccess | None:
        """As ``access``, and the row held until the transaction ends, in one statement. Its
        allocated_minutes may predate the lock: check durations in a later statement."""
        row = await self.db.one("tasks.lock_task_access", task_id=task_id, caller_id=caller_id)
        if row is None:
            return None
        return TaskAccess(Task.from_row(row), row["owner_id"])

    async def lock(self, task_id: uuid.UUID) -> bool:
        """Hold the task row until the transaction ends; False when no such task."""
        return await self.db.value("tasks.lock_task", task_id=task_id) is not None

    async def create(
        self, event_id: uuid.UUID, parent_id: uuid.UUID | None, creator_id: uuid.UUID,
        fields: dict[str, Any],
    ) -> tuple[Task, set[uuid.UUID]] | None:  # fmt: skip
        """A new task, its creator made a maintainer of it: the task as the creator sees it,
        and every user a role reaches it by (``member_ids``), from the one INSERT. None when
        it does not fit in the parent's free minutes (hold the parent's lock first)."""
        row = await self.db.one(
            "tasks.insert_task",
            event_id=event_id,
            parent_id=parent_id,
            title=fields["title"],
            description=fields["description"],
            duration_minutes=fields["duration_minutes"],
            created_by=creator_id,
        )
        if row is None:
            return None
        return Task.from_row(row), set(row["member_ids"])

    async def update(self, task_id: uuid.UUID, changes: dict[str, Any], *, move: bool) -> None:
        """A partial update; with ``move`` the parent becomes ``changes["parent_id"]``."""
        await self.db.execute(
            "tasks.update_task",
            task_id=task_id,
            title=changes.get("title"),
            description=changes.get("description"),
            duration_minutes=changes.get("duration_minutes"),
            move=move,
            parent_id=changes.get("parent_id"),
        )

    async def set_completion(self, task_id: uuid.UUID, completed: bool) -> None:
        await self.db.execute("tasks.set_task_completion", task_id=task_id, completed=completed)

    async def delete(self, task_id: uuid.UUID) -> None:
        await self.db.execute("tasks.delete_task", task_id=task_id)

    async def in_subtree(self, task_id: uuid.UUID, candidate_id: uuid.UUID) -> bool:
        """Whether ``candidate_id`` is ``task_id`` or one of its descendants."""
        return bool(
            await self.db.value(
                "tasks.task_is_in_subtree", task_id=task_id, candidate_id=candidate_id
            )
        )

    async def owner_page(
        self, event_id: uuid.UUID, caller_id: uuid.UUID, after: uuid.UUID | None, limit: int
    ) -> tuple[uuid.UUID, list[RenderedTask]] | None:
        """The event's owner and, when that is the caller, a page of every task of the event
        as their API bodies (empty otherwise); None when there is no such event. One
        statement."""
        rows = await self.db.many(
            "tasks.list_event_tasks_if_owner",
            event_id=event_id,
            caller_id=caller_id,
            after_id=after or FIRST,
            max_rows=limit,
        )
        if not rows:
            return None
        return rows[0]["owner_id"], [RenderedTask.from_row(r) for r in rows if r["id"]]

    async def member_page(
        self, event_id: uuid.UUID, caller_id: uuid.UUID, after: uuid.UUID | None, limit: int
    ) -> list[RenderedTask]:
        """A page of the tasks of the event that the subtrees of the caller's roles hold, as
        their API bodies (the caller is not the owner). One statement."""
        rows = await self.db.many(
            "tasks.list_event_tasks_as_member",
            event_id=event_id,
            caller_id=caller_id,
            after_id=after or FIRST,
            max_rows=limit,
        )
        return [RenderedTask.from_row(r) for r in rows]

    async def collaborators(
        self, task_id: uuid.UUID, after: uuid.UUID | None, limit: int
    ) -> list[Collaborator]:
        rows = await self.db.many(
            "tasks.list_task_collaborators",
            task_id=task_id,
            after_user_id=after or FIRST,
            max_rows=limit,
        )
        return [Collaborator.from_row(r) for r in rows]

    async def member_ids(self, task_id: uuid.UUID) -> set[uuid.UUID]:
        """Every user a role reaches the task by, the event's owner included."""
        rows = await self.db.many("tasks.list_task_member_ids", task_id=task_id)
        return {r["user_id"] for r in rows}

    async def add_member(
        self, task_id: uuid.UUID, user_id: uuid.UUID, role: str
    ) -> Membership | None:
        """None when the user is already a direct member."""
        row = await self.db.one(
            "tasks.insert_task_member", task_id=task_id, user_id=user_id, role=role
        )
        return Membership.from_row(row) if row else None

    async def remove_member(self, task_id: uuid.UUID, user_id: uuid.UUID) -> Membership | None:
        """The direct role removed; None when the user held none there."""
        row = await self.db.one("tasks.delete_task_member", task_id=task_id, user_id=user_id)
        return Membership.from_row(row) if row else None
