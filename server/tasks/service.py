"""Use cases of tasks (API.md, "Roles on tasks", "Task"). No HTTP here: handlers parse and
render, these decide and write, and raise the domain errors of errors.py.

``access_task`` loads what a decision needs in one query (the caller's role is derived there,
never stored down the tree) and enforces it through policy.py; ``do_*`` write inside one Work
and notify once per change, as the last step.

The duration rule holds under concurrency because every writer that checks durations under a
parent first locks that parent's row, and reads the rollup in a later statement (it then sees
what the previous holder committed). Locks are taken ancestors first (a parent before its
subtask, as a cascading DELETE does), and moves also take the event row first, so writers
never wait on each other in a circle. Notifications are written last, for the same reason.
"""

from __future__ import annotations

import uuid
from typing import Any

from ..db import Runner
from ..errors import Conflict, Invalid, NotFound
from ..events.service import access_event
from ..policy import (
    Action,
    EventFacts,
    TaskFacts,
    collaborator_removal_decision,
    enforce,
    event_decision,
    task_decision,
)
from ..work import Work
from .models import Collaborator, Membership, RenderedTask, Task, TaskAccess
from .repository import TasksRepository

TASK_UPDATE = "task_update"
SYSTEM = "system"


async def access_task(
    db: Runner, caller_id: uuid.UUID, task_id: uuid.UUID, action: Action, *, lock: bool = False
) -> TaskAccess:
    """The task (with the caller's role and its rollup) if the caller may do ``action`` to it:
    NotFound when it does not exist or the caller holds no role on it, Forbidden when the role
    is too low. ``lock`` holds the row until the transaction ends, taken before the facts are
    read, so they are current."""
    tasks = TasksRepository(db)
    if lock and not await tasks.lock(task_id):
        raise NotFound("no such task")
    found = await tasks.access(task_id, caller_id)
    if found is None:
        raise NotFound("no such task")
    enforce(task_decision(TaskFacts(found.task.my_role), action), "task", action)
    return found


def too_long(parent_id: uuid.UUID, minutes_free: int) -> Invalid:
    """A breach of the duration rule under ``parent_id``, where ``minutes_free`` are left."""
    return Invalid(
        {"duration_minutes": [f"only {minutes_free} minutes are free under task {parent_id}"]},
        parent_id=str(parent_id),
        minutes_free=minutes_free,
    )


def too_short(task: Task) -> Invalid:
    """A shrink below what the task's subtasks already take."""
    return Invalid(
        {
            "duration_minutes": [
                f"the subtasks take {task.allocated_minutes} minutes: "
                f"the task cannot shrink below that"
            ]
        },
        parent_id=str(task.id),
        minutes_free=task.allocated_minutes,
    )


def same_event(parent: Task, event_id: uuid.UUID) -> None:
    if parent.event_id != event_id:
        raise Invalid({"parent_id": ["must be a task of the same event"]})


async def _current(db: Runner, task_id: uuid.UUID, caller_id: uuid.UUID) -> Task:
    found = await TasksRepository(db).access(task_id, caller_id)
    assert found is not None  # written or locked in this transaction
    return found.task


def _notice(task: Task, action: str, actor_id: uuid.UUID) -> dict[str, Any]:
    return {
        "task_id": str(task.id),
        "event_id": str(task.event_id),
        "action": action,
        "actor_id": str(actor_id),
    }


async def do_create_task(work: Work, caller_id: uuid.UUID, fields: dict[str, Any]) -> Task:
    """A top-level task (the event's owner) or a subtask (a maintainer of the parent, under
    the parent's lock, within its free minutes); the creator becomes a maintainer of it. The
    parent's lock and access facts are one statement, and the INSERT checks the duration rule
    itself, after the lock, and returns the task as the creator sees it and its members:
    BEGIN, the lock with the facts, the INSERT, the notifications (when anyone but the creator
    is reached) and COMMIT."""
    tasks = TasksRepository(work.tx)
    event_id, parent_id = fields["event_id"], fields.get("parent_id")
    if parent_id is None:
        await access_event(work.tx, caller_id, event_id, Action.CREATE_TASK)
    else:
        found = await tasks.lock_access(parent_id, caller_id)
        if found is None:
            raise NotFound("no such task")
        facts = TaskFacts(found.task.my_role)
        enforce(task_decision(facts, Action.CREATE_SUBTASK), "task", Action.CREATE_SUBTASK)
        same_event(found.task, event_id)
    created = await tasks.create(event_id, parent_id, caller_id, fields)
    if created is None:  # over the parent's free minutes, as they are now (under the lock)
        assert parent_id is not None
        parent = await _current(work.tx, parent_id, caller_id)
        raise too_long(parent.id, parent.minutes_free)
    task, members = created
    await work.notify(members, TASK_UPDATE, _notice(task, "created", caller_id), actor_id=caller_id)
    return task


async def do_update_task(
    work: Work, caller_id: uuid.UUID, task_id: uuid.UUID, changes: dict[str, Any]
) -> Task:
    """A partial update by a maintainer. A new duration fits under the parent and above what
    the subtasks take; a new parent (``parent_id``) is a task of the same event, outside the
    task's subtree, where the caller is a maintainer, with room for the task (NULL: top level,
    the event's owner only)."""
    if "parent_id" in changes:
        return await _move(work, caller_id, task_id, changes)
    tasks = TasksRepository(work.tx)
    for _ in range(5):  # again if the task moved between the first read and the locks
        seen = (await access_task(work.tx, caller_id, task_id, Action.UPDATE)).task
        if "duration_minutes" in changes and seen.parent_id is not None:
            await tasks.lock(seen.parent_id)  # the parent first: ancestors before subtasks
        task = (await access_task(work.tx, caller_id, task_id, Action.UPDATE, lock=True)).task
        if task.parent_id == seen.parent_id:
            break
    else:
        raise Conflict("the task keeps moving; try again")
    duration = changes.get("duration_minutes", task.duration_minutes)
    if duration < task.allocated_minutes:
        raise too_short(task)
    if duration > task.duration_minutes and task.parent_id is not None:
        parent = await _current(work.tx, task.parent_id, caller_id)
        room = parent.minutes_free + task.duration_minutes
        if duration > room:
            raise too_long(parent.id, room)
    before = await tasks.member_ids(task.id)
    await tasks.update(task.id, changes, move=False)
    updated = await _current(work.tx, task.id, caller_id)
    await work.notify(
        before, TASK_UPDATE, _notice(updated, "updated", caller_id), actor_id=caller_id
    )
    return updated


async def _move(
    work: Work, caller_id: uuid.UUID, task_id: uuid.UUID, changes: dict[str, Any]
) -> Task:
    """PUT with ``parent_id``: moves are serialised per event (its row locked first), so the
    cycle check reads a tree no other move is changing."""
    tasks = TasksRepository(work.tx)
    first = await access_task(work.tx, caller_id, task_id, Action.UPDATE)
    await access_event(work.tx, caller_id, first.task.event_id, Action.READ, lock=True)
    new_parent_id = changes["parent_id"]
    if new_parent_id is not None and await tasks.in_subtree(task_id, new_parent_id):
        raise Invalid({"parent_id": ["must not be the task itself or one of its subtasks"]})
    target: Task | None = None
    if new_parent_id is not None:  # the new parent before the task: ancestors first
        target = (
            await access_task(work.tx, caller_id, new_parent_id, Action.CREATE_SUBTASK, lock=True)
        ).task
        same_event(target, first.task.event_id)
    found = await access_task(work.tx, caller_id, task_id, Action.UPDATE, lock=True)
    task = found.task
    duration = changes.get("duration_minutes", task.duration_minutes)
    if duration < task.allocated_minutes:
        raise too_short(task)
    moves = new_parent_id != task.parent_id
    if moves and new_parent_id is None:
        facts = EventFacts(owner_id=found.owner_id, caller_is_member=True)
        enforce(event_decision(caller_id, facts, Action.CREATE_TASK), "event", Action.CREATE_TASK)
    if target is not None:
        room = target.minutes_free + (0 if moves else task.duration_minutes)
        if duration > room:
            raise too_long(target.id, room)
    before = await tasks.member_ids(task.id)
    await tasks.update(task.id, changes, move=moves)
    after = await tasks.member_ids(task.id) if moves else before
    updated = await _current(work.tx, task.id, caller_id)
    await work.notify(
        before | after, TASK_UPDATE, _notice(updated, "updated", caller_id), actor_id=caller_id
    )
    return updated


async def do_delete_task(work: Work, caller_id: uuid.UUID, task_id: uuid.UUID) -> None:
    """Deletes a task with its subtree; its members (before) are told."""
    tasks = TasksRepository(work.tx)
    task = (await access_task(work.tx, caller_id, task_id, Action.DELETE, lock=True)).task
    members = await tasks.member_ids(task.id)
    await tasks.delete(task.id)
    await work.notify(members, TASK_UPDATE, _notice(task, "deleted", caller_id), actor_id=caller_id)


async def do_set_completion(
    work: Work, caller_id: uuid.UUID, task_id: uuid.UUID, completed: bool
) -> Task:
    """Completes or reopens a task (any member); notifies only when it changes."""
    tasks = TasksRepository(work.tx)
    task = (await access_task(work.tx, caller_id, task_id, Action.COMPLETE, lock=True)).task
    if task.completed == completed:
        return task
    await tasks.set_completion(task.id, completed)
    updated = await _current(work.tx, task.id, caller_id)
    action = "completed" if completed else "reopened"
    await work.notify(
        await tasks.member_ids(task.id), TASK_UPDATE, _notice(updated, action, caller_id),
        actor_id=caller_id,
    )  # fmt: skip
    return updated


async def get_task(db: Runner, caller_id: uuid.UUID, task_id: uuid.UUID) -> Task:
    return (await access_task(db, caller_id, task_id, Action.READ)).task


async def list_event_tasks(
    db: Runner, caller_id: uuid.UUID, event_id: uuid.UUID, after: uuid.UUID | None, limit: int
) -> list[RenderedTask]:
    """``limit`` of the event's tasks that the caller can see, by id after ``after``, as
    their API bodies. The owner's page comes with the event's owner in one statement; anyone
    else's page is a second one, whose rows prove that the caller holds a role in the event;
    only an empty one needs the event's access facts (a third) to tell 404 from no more."""
    tasks = TasksRepository(db)
    found = await tasks.owner_page(event_id, caller_id, after, limit)
    if found is None:
        raise NotFound("no such event")
    owner_id, page = found
    if owner_id != caller_id:
        page = await tasks.member_page(event_id, caller_id, after, limit)
        if not page:
            await access_event(db, caller_id, event_id, Action.LIST_TASKS)
            return page
    facts = EventFacts(owner_id=owner_id, caller_is_member=owner_id != caller_id)
    enforce(event_decision(caller_id, facts, Action.LIST_TASKS), "event", Action.LIST_TASKS)
    return page


async def do_add_collaborator(
    work: Work, caller_id: uuid.UUID, task_id: uuid.UUID, user_id: uuid.UUID, role: str
) -> Membership:
    """Grants ``user_id`` a role directly on the task (a maintainer): Conflict when the user
    is already a direct member. An unknown user meets task_members_user_id_fkey (422)."""
    task = (await access_task(work.tx, caller_id, task_id, Action.ADD_COLLABORATOR, lock=True)).task
    added = await TasksRepository(work.tx).add_member(task.id, user_id, role)
    if added is None:
        raise Conflict("the user is already a direct member of this task")
    await work.notify(
        [user_id], SYSTEM,
        {"task_id": str(task.id), "role": role, "action": "added", "actor_id": str(caller_id)},
        actor_id=caller_id,
    )  # fmt: skip
    return added


async def list_collaborators(
    db: Runner, caller_id: uuid.UUID, task_id: uuid.UUID, after: uuid.UUID | None, limit: int
) -> list[Collaborator]:
    task = (await access_task(db, caller_id, task_id, Action.LIST_COLLABORATORS)).task
    return await TasksRepository(db).collaborators(task.id, after, limit)


async def do_remove_collaborator(
    work: Work, caller_id: uuid.UUID, task_id: uuid.UUID, user_id: uuid.UUID
) -> None:
    """Removes ``user_id``'s direct role on the task (a maintainer, or the user itself);
    NotFound when the user holds none there (an inherited role is removed where it is held).
    The event's owner keeps the tree whatever is removed: its role is not stored."""
    found = await access_task(work.tx, caller_id, task_id, Action.READ, lock=True)
    facts = TaskFacts(found.task.my_role)
    enforce(
        collaborator_removal_decision(caller_id, user_id, facts), "task", Action.REMOVE_COLLABORATOR
    )
    removed = await TasksRepository(work.tx).remove_member(found.task.id, user_id)
    if removed is None:
        raise NotFound("the user holds no role directly on this task")
    await work.notify(
        [user_id], SYSTEM,
        {"task_id": str(task_id), "role": removed.role, "action": "removed",
         "actor_id": str(caller_id)},
        actor_id=caller_id,
    )  # fmt: skip
