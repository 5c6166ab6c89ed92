-- Tasks: a tree per event, and the roles users hold on it (API.md, "Roles on tasks", "Task").
-- A role is stored only where it is granted (task_members); the role that reaches a task is
-- derived here when read: the highest of the caller's roles on the task or any ancestor, or
-- maintainer for the event's owner. Ancestors are found walking up by tasks_pkey (the depth of
-- the tree, a handful of probes); subtrees walking down by tasks_parent_id_idx.
-- Roles rank maintainer (2) above collaborator (1).
-- Fences: each step of a walk, and each membership probe, is a LATERAL subquery with OFFSET 0.
-- OFFSET 0 keeps the planner from flattening it into a join, so it runs once per row of the
-- work table as a parameterized index scan. Without it the plan depends on table size: the
-- planner guesses ~10 rows per recursion step, and against a small table (1,000 tasks) it picks
-- a hash join over a seq scan of tasks at every step (issue 10).
-- Page bodies: the two statements behind GET /events/{id}/tasks return each task, in
-- `rendered`, as the JSON body API.md gives it (server/tasks/schemas.py task_json writes the
-- same body for one task), built by row_to_json, so the service sends a page of 200 tasks
-- without decoding and encoding 2,800 values (4-5 service CPU ms a page before). Timestamps
-- as the service writes them: UTC, "2024-01-15T10:00:00Z", with ".ffffff" (6 digits) only
-- when there is a fraction of a second. tests/test_tasks.py checks every listed body against
-- GET /tasks/{id}; keep the keys, their order and the formats.

-- name: get_task_access :one
-- One task with everything an access decision and its body need, in one statement: the
-- caller's role (NULL: none reaches it), the event's owner, and allocated_minutes (the sum of
-- the direct subtasks' durations). Walks up the ancestors one tasks_pkey probe a step (fenced),
-- the caller's membership on each is one probe on (task_id, user_id) (fenced): task_members_pkey,
-- or task_members_user_id_idx index-only (it includes role); the event by events_pkey; the
-- rollup is a range on tasks_parent_id_idx.
WITH RECURSIVE path (id, parent_id) AS (
    SELECT id, parent_id FROM tasks WHERE id = :task_id
    UNION
    SELECT up.id, up.parent_id
    FROM path
    CROSS JOIN LATERAL (
        SELECT p.id, p.parent_id FROM tasks AS p WHERE p.id = path.parent_id OFFSET 0
    ) AS up
)
SELECT t.id, t.event_id, t.parent_id, t.title, t.description, t.duration_minutes,
    t.completed, t.completed_at, t.created_by, t.created_at, t.updated_at,
    e.user_id AS owner_id,
    CASE
        WHEN e.user_id = :caller_id THEN 'maintainer'
        ELSE (
            SELECT CASE WHEN bool_or(m.role = 'maintainer') THEN 'maintainer'
                        WHEN count(*) > 0 THEN 'collaborator' END
            FROM path
            CROSS JOIN LATERAL (
                SELECT g.role FROM task_members AS g
                WHERE g.task_id = path.id AND g.user_id = :caller_id OFFSET 0
            ) AS m
        )
    END AS my_role,
    (SELECT coalesce(sum(c.duration_minutes), 0) FROM tasks AS c WHERE c.parent_id = t.id)
        AS allocated_minutes
FROM tasks AS t
JOIN events AS e ON e.id = t.event_id
WHERE t.id = :task_id;

-- name: lock_task_access :one
-- get_task_access, and the task's row locked (as lock_task) in the same statement: for POST
-- /tasks, which locks the parent and reads its access facts, one round trip instead of two.
-- The lock is taken as the row is read; if it had to wait, the statement's snapshot is older
-- than the lock, so allocated_minutes may miss subtasks committed meanwhile: never check the
-- duration rule against it; insert_task checks it again in a later statement, which sees them.
-- The role and the event are as of the statement's start, as for any read. Indexes as
-- get_task_access.
WITH RECURSIVE path (id, parent_id) AS (
    SELECT id, parent_id FROM tasks WHERE id = :task_id
    UNION
    SELECT up.id, up.parent_id
    FROM path
    CROSS JOIN LATERAL (
        SELECT p.id, p.parent_id FROM tasks AS p WHERE p.id = path.parent_id OFFSET 0
    ) AS up
)
SELECT t.id, t.event_id, t.parent_id, t.title, t.description, t.duration_minutes,
    t.completed, t.completed_at, t.created_by, t.created_at, t.updated_at,
    e.user_id AS owner_id,
    CASE
        WHEN e.user_id = :caller_id THEN 'maintainer'
        ELSE (
            SELECT CASE WHEN bool_or(m.role = 'maintainer') THEN 'maintainer'
                        WHEN count(*) > 0 THEN 'collaborator' END
            FROM path
            CROSS JOIN LATERAL (
                SELECT g.role FROM task_members AS g
                WHERE g.task_id = path.id AND g.user_id = :caller_id OFFSET 0
            ) AS m
        )
    END AS my_role,
    (SELECT coalesce(sum(c.duration_minutes), 0) FROM tasks AS c WHERE c.parent_id = t.id)
        AS allocated_minutes
FROM tasks AS t
JOIN events AS e ON e.id = t.event_id
WHERE t.id = :task_id
FOR NO KEY UPDATE OF t;

-- name: lock_task :value
-- Locks one task row until the transaction ends and returns its id (NULL: no such task).
-- Taken on a parent before its subtasks' durations are checked and changed (create, update,
-- re-parent, shrink), so racing writers under one parent take turns; the check then reads in
-- a later statement, which sees whatever the previous holder committed. FOR NO KEY UPDATE does
-- not block the foreign-key checks (FOR KEY SHARE) of subtasks being inserted. tasks_pkey.
SELECT id FROM tasks WHERE id = :task_id FOR NO KEY UPDATE;

-- name: insert_task :one
-- Creates a task (POST /tasks) if it fits in its parent's free minutes (the duration rule; no
-- row when it does not: the caller holds the parent's lock, taken by an earlier statement, so
-- this statement's snapshot has every sibling committed before it), makes its creator a
-- maintainer of it, and returns it as get_task_access would for the creator (my_role
-- maintainer: the role just granted; allocated_minutes 0: no subtask yet) with member_ids,
-- the users a role reaches it by (as list_task_member_ids: the creator, the members of the
-- parent and its ancestors, the event's owner), in one statement instead of three.
-- tasks_parent_fkey keeps the parent in the same event. The fit: the parent by tasks_pkey,
-- its subtasks' sum index-only on tasks_parent_id_idx. tasks_pkey, task_members_pkey; the
-- parent's ancestors one tasks_pkey probe a step and their members one task_members_pkey
-- range each (both fenced); the owner by events_pkey.
WITH RECURSIVE created AS (
    INSERT INTO tasks (event_id, parent_id, title, description, duration_minutes, created_by)
    SELECT :event_id::uuid, :parent_id::uuid, :title, :description, :duration_minutes::integer,
        :created_by::uuid
    WHERE :parent_id::uuid IS NULL OR :duration_minutes::integer <= (
        SELECT p.duration_minutes - coalesce(
            (SELECT sum(c.duration_minutes) FROM tasks AS c WHERE c.parent_id = p.id), 0
        )
        FROM tasks AS p
        WHERE p.id = :parent_id
    )
    RETURNING id, event_id, parent_id, title, description, duration_minutes, completed,
        completed_at, created_by, created_at, updated_at
), membership AS (
    INSERT INTO task_members (task_id, user_id, role)
    SELECT id, created_by, 'maintainer' FROM created
), path (id, parent_id) AS (
    SELECT id, parent_id FROM tasks WHERE id = :parent_id
    UNION
    SELECT up.id, up.parent_id
    FROM path
    CROSS JOIN LATERAL (
        SELECT p.id, p.parent_id FROM tasks AS p WHERE p.id = path.parent_id OFFSET 0
    ) AS up
)
SELECT c.id, c.event_id, c.parent_id, c.title, c.description, c.duration_minutes, c.completed,
    c.completed_at, c.created_by, c.created_at, c.updated_at,
    'maintainer' AS my_role, 0::bigint AS allocated_minutes,
    ARRAY(
        SELECT c.created_by
        UNION
        SELECT m.user_id
        FROM path
        CROSS JOIN LATERAL (
            SELECT g.user_id FROM task_members AS g WHERE g.task_id = path.id OFFSET 0
        ) AS m
        UNION
        SELECT e.user_id FROM events AS e WHERE e.id = c.event_id
    ) AS member_ids
FROM created AS c;

-- name: update_task :exec
-- Partial update (PUT /tasks/{id}): NULL keeps a column; move = true sets parent_id (NULL:
-- top level). The service has checked the duration rule and cycles under the row locks.
-- tasks_pkey.
UPDATE tasks
SET title = coalesce(:title, title),
    description = coalesce(:description, description),
    duration_minutes = coalesce(:duration_minutes, duration_minutes),
    parent_id = CASE WHEN :move THEN :parent_id::uuid ELSE parent_id END,
    updated_at = now()
WHERE id = :task_id;

-- name: set_task_completion :exec
-- PATCH /tasks/{id}/completion: completed_at is set when the task is completed (kept when it
-- already was) and cleared when it is reopened. tasks_pkey.
UPDATE tasks
SET completed = :completed,
    completed_at = CASE WHEN :completed THEN coalesce(completed_at, now()) END,
    updated_at = CASE WHEN completed = :completed THEN updated_at ELSE now() END
WHERE id = :task_id;

-- name: delete_task :exec
-- Deletes a task; its subtree goes with it through tasks_parent_fkey (ON DELETE CASCADE, each
-- level found by tasks_parent_id_idx), memberships through task_members_task_id_fkey.
-- tasks_pkey.
DELETE FROM tasks WHERE id = :task_id;

-- name: task_is_in_subtree :value
-- Whether :candidate_id is :task_id or inside its subtree: the cycle check of a re-parent
-- (moving a task under its own descendant). Walks up from the candidate, one tasks_pkey probe
-- a step (fenced: the depth of the tree), not down the subtree.
WITH RECURSIVE up (id, parent_id) AS (
    SELECT id, parent_id FROM tasks WHERE id = :candidate_id
    UNION
    SELECT t.id, t.parent_id
    FROM up
    CROSS JOIN LATERAL (
        SELECT p.id, p.parent_id FROM tasks AS p WHERE p.id = up.parent_id OFFSET 0
    ) AS t
)
SELECT EXISTS (SELECT 1 FROM up WHERE id = :task_id);

-- name: list_event_tasks_if_owner :many
-- The event's owner, and when the caller is that owner one page of every task of the event
-- (GET /events/{id}/tasks), by id after :after_id (the nil UUID for the first page), each
-- task's API body in `rendered` (see "Page bodies" above): the owner's page and its access
-- check in one statement. No row: no such event. Rows with a NULL id: the
-- caller is not the owner (one row; the page is not read) or the page is empty. The event by
-- events_pkey; the page a range on tasks_event_id_id_key in id order; the rollup per row is
-- index-only on tasks_parent_id_idx. The owner is maintainer of every task.
SELECT e.user_id AS owner_id, page.id, page.rendered
FROM events AS e
LEFT JOIN LATERAL (
    SELECT t.id, row_to_json(item)::text AS rendered
    FROM tasks AS t
    CROSS JOIN LATERAL (
        SELECT coalesce(sum(c.duration_minutes), 0) AS minutes
        FROM tasks AS c WHERE c.parent_id = t.id
    ) AS allocated
    CROSS JOIN LATERAL (
        SELECT t.id, t.event_id, t.parent_id, t.title, t.description, t.duration_minutes,
            allocated.minutes AS allocated_minutes,
            t.duration_minutes - allocated.minutes AS minutes_free,
            t.completed,
            CASE WHEN date_trunc('second', t.completed_at) = t.completed_at
                THEN to_char(t.completed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
                ELSE to_char(t.completed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
            END AS completed_at,
            t.created_by,
            'maintainer' AS my_role,
            CASE WHEN date_trunc('second', t.created_at) = t.created_at
                THEN to_char(t.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
                ELSE to_char(t.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
            END AS created_at,
            CASE WHEN date_trunc('second', t.updated_at) = t.updated_at
                THEN to_char(t.updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
                ELSE to_char(t.updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
            END AS updated_at
    ) AS item
    WHERE e.user_id = :caller_id AND t.event_id = e.id AND t.id > :after_id
    ORDER BY t.id
    LIMIT :max_rows
) AS page ON true
WHERE e.id = :event_id
ORDER BY page.id;

-- name: list_event_tasks_as_member :many
-- One page of the tasks of an event that a member (not the owner) can see, by id after
-- :after_id, each task's API body in `rendered` (see "Page bodies" above): the subtrees of
-- the tasks the caller holds a role on, each task with the highest role reaching it. Driven
-- by what the caller sees, not by the event's size: the roots from task_members_user_id_idx
-- (their event checked by one probe each, fenced: index-only on tasks_event_id_id_key
-- (event_id, id), or tasks_pkey), walked down one tasks_parent_id_idx range a step (fenced),
-- the page's rows one tasks_pkey probe each (fenced); the rollup per row is index-only on
-- tasks_parent_id_idx.
WITH RECURSIVE reached (id, rank) AS (
    SELECT m.task_id, CASE m.role WHEN 'maintainer' THEN 2 ELSE 1 END
    FROM task_members AS m
    CROSS JOIN LATERAL (
        SELECT r.id FROM tasks AS r WHERE r.id = m.task_id AND r.event_id = :event_id OFFSET 0
    ) AS root
    WHERE m.user_id = :caller_id
    UNION
    SELECT c.id, reached.rank
    FROM reached
    CROSS JOIN LATERAL (
        SELECT k.id FROM tasks AS k WHERE k.parent_id = reached.id OFFSET 0
    ) AS c
), visible AS (
    SELECT id, max(rank) AS rank FROM reached GROUP BY id
), page AS (
    SELECT id, rank FROM visible WHERE id > :after_id ORDER BY id LIMIT :max_rows
)
SELECT t.id, row_to_json(item)::text AS rendered
FROM page AS p
CROSS JOIN LATERAL (
    SELECT r.id, r.event_id, r.parent_id, r.title, r.description, r.duration_minutes,
        r.completed, r.completed_at, r.created_by, r.created_at, r.updated_at
    FROM tasks AS r WHERE r.id = p.id OFFSET 0
) AS t
CROSS JOIN LATERAL (
    SELECT coalesce(sum(c.duration_minutes), 0) AS minutes FROM tasks AS c WHERE c.parent_id = t.id
) AS allocated
CROSS JOIN LATERAL (
    SELECT t.id, t.event_id, t.parent_id, t.title, t.description, t.duration_minutes,
        allocated.minutes AS allocated_minutes,
        t.duration_minutes - allocated.minutes AS minutes_free,
        t.completed,
        CASE WHEN date_trunc('second', t.completed_at) = t.completed_at
            THEN to_char(t.completed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
            ELSE to_char(t.completed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') END
            AS completed_at,
        t.created_by,
        CASE WHEN p.rank = 2 THEN 'maintainer' ELSE 'collaborator' END AS my_role,
        CASE WHEN date_trunc('second', t.created_at) = t.created_at
            THEN to_char(t.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
            ELSE to_char(t.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') END
            AS created_at,
        CASE WHEN date_trunc('second', t.updated_at) = t.updated_at
            THEN to_char(t.updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
            ELSE to_char(t.updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') END
            AS updated_at
) AS item
ORDER BY t.id;

-- name: list_task_collaborators :many
-- One page of the users holding a role on a task (GET /tasks/{id}/collaborators), by user_id
-- after :after_user_id (the nil UUID for the first page): granted on the task itself or
-- inherited from an ancestor, each user once with the highest role and, in task_id, the
-- nearest task that grants it. Walks up one tasks_pkey probe a step (fenced), the members of
-- each ancestor one range on task_members_pkey (its task_id prefix; fenced), the page's names
-- one users_pkey probe each (fenced).
WITH RECURSIVE path (id, parent_id, depth) AS (
    SELECT id, parent_id, 1 FROM tasks WHERE id = :task_id
    UNION ALL
    SELECT up.id, up.parent_id, path.depth + 1
    FROM path
    CROSS JOIN LATERAL (
        SELECT p.id, p.parent_id FROM tasks AS p WHERE p.id = path.parent_id OFFSET 0
    ) AS up
), roles AS (
    SELECT DISTINCT ON (m.user_id) m.user_id, m.role, m.task_id
    FROM path
    CROSS JOIN LATERAL (
        SELECT g.user_id, g.role, g.task_id FROM task_members AS g
        WHERE g.task_id = path.id OFFSET 0
    ) AS m
    WHERE m.user_id > :after_user_id
    ORDER BY m.user_id, (m.role = 'maintainer') DESC, path.depth
    LIMIT :max_rows
)
SELECT r.user_id, u.name, r.role, r.task_id
FROM roles AS r
CROSS JOIN LATERAL (SELECT n.name FROM users AS n WHERE n.id = r.user_id OFFSET 0) AS u
ORDER BY r.user_id;

-- name: list_task_member_ids :many
-- Every user a role reaches a task by (the recipients of its task_update notifications): the
-- members of the task and its ancestors, and the event's owner. Walks up one tasks_pkey probe
-- a step (fenced), the members of each ancestor one range on task_members_pkey (its task_id
-- prefix; fenced); the owner by tasks_pkey and events_pkey.
WITH RECURSIVE path (id, parent_id) AS (
    SELECT id, parent_id FROM tasks WHERE id = :task_id
    UNION
    SELECT up.id, up.parent_id
    FROM path
    CROSS JOIN LATERAL (
        SELECT p.id, p.parent_id FROM tasks AS p WHERE p.id = path.parent_id OFFSET 0
    ) AS up
)
SELECT m.user_id
FROM path
CROSS JOIN LATERAL (
    SELECT g.user_id FROM task_members AS g WHERE g.task_id = path.id OFFSET 0
) AS m
UNION
SELECT e.user_id FROM tasks AS t JOIN events AS e ON e.id = t.event_id WHERE t.id = :task_id;

-- name: insert_task_member :one
-- Grants a user a role directly on a task (POST /tasks/{id}/collaborators); no row when the
-- user is already a direct member (task_members_pkey decides, so of racing adds one wins).
INSERT INTO task_members (task_id, user_id, role)
VALUES (:task_id, :user_id, :role)
ON CONFLICT (task_id, user_id) DO NOTHING
RETURNING task_id, user_id, role, created_at;

-- name: delete_task_member :one
-- Removes a user's direct role on a task (DELETE /tasks/{id}/collaborators/{user_id}) and
-- returns it; no row when the user holds none there. task_members_pkey.
DELETE FROM task_members
WHERE task_id = :task_id AND user_id = :user_id
RETURNING task_id, user_id, role, created_at;
