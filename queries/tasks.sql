-- Tasks: a tree per event, and the roles users hold on it (API.md, "Roles on tasks", "Task").
-- A role is stored only where it is granted (task_members); the role that reaches a task is
-- derived here when read: the highest of the caller's roles on the task or any ancestor, or
-- maintainer for the event's owner. Ancestors are found walking up by tasks_pkey (the depth of
-- the tree, a handful of probes); subtrees walking down by tasks_parent_id_idx.
-- Roles rank maintainer (2) above collaborator (1).

-- name: get_task_access :one
-- One task with everything an access decision and its body need, in one statement: the
-- caller's role (NULL: none reaches it), the event's owner, and allocated_minutes (the sum of
-- the direct subtasks' durations). Walks up the ancestors by tasks_pkey, the caller's
-- memberships on them by task_members_pkey, the event by events_pkey; the rollup is an
-- index-only range on tasks_parent_id_idx.
WITH RECURSIVE path (id, parent_id) AS (
    SELECT id, parent_id FROM tasks WHERE id = :task_id
    UNION
    SELECT up.id, up.parent_id FROM tasks AS up JOIN path ON up.id = path.parent_id
)
SELECT t.id, t.event_id, t.parent_id, t.title, t.description, t.duration_minutes,
    t.completed, t.completed_at, t.created_by, t.created_at, t.updated_at,
    e.user_id AS owner_id,
    CASE
        WHEN e.user_id = :caller_id THEN 'maintainer'
        ELSE (
            SELECT CASE WHEN bool_or(m.role = 'maintainer') THEN 'maintainer'
                        WHEN count(*) > 0 THEN 'collaborator' END
            FROM path JOIN task_members AS m ON m.task_id = path.id AND m.user_id = :caller_id
        )
    END AS my_role,
    (SELECT coalesce(sum(c.duration_minutes), 0) FROM tasks AS c WHERE c.parent_id = t.id)
        AS allocated_minutes
FROM tasks AS t
JOIN events AS e ON e.id = t.event_id
WHERE t.id = :task_id;

-- name: lock_task :value
-- Locks one task row until the transaction ends and returns its id (NULL: no such task).
-- Taken on a parent before its subtasks' durations are checked and changed (create, update,
-- re-parent, shrink), so racing writers under one parent take turns; the check then reads in
-- a later statement, which sees whatever the previous holder committed. FOR NO KEY UPDATE does
-- not block the foreign-key checks (FOR KEY SHARE) of subtasks being inserted. tasks_pkey.
SELECT id FROM tasks WHERE id = :task_id FOR NO KEY UPDATE;

-- name: insert_task :one
-- Creates a task (POST /tasks) and makes its creator a maintainer of it, in one statement.
-- tasks_parent_fkey keeps the parent in the same event. tasks_pkey, task_members_pkey.
WITH created AS (
    INSERT INTO tasks (event_id, parent_id, title, description, duration_minutes, created_by)
    VALUES (:event_id, :parent_id, :title, :description, :duration_minutes, :created_by)
    RETURNING id, event_id, parent_id, title, description, duration_minutes, completed,
        completed_at, created_by, created_at, updated_at
), membership AS (
    INSERT INTO task_members (task_id, user_id, role)
    SELECT id, created_by, 'maintainer' FROM created
)
SELECT id, event_id, parent_id, title, description, duration_minutes, completed, completed_at,
    created_by, created_at, updated_at
FROM created;

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
-- (moving a task under its own descendant). Walks up from the candidate by tasks_pkey (the
-- depth of the tree), not down the subtree.
WITH RECURSIVE up (id, parent_id) AS (
    SELECT id, parent_id FROM tasks WHERE id = :candidate_id
    UNION
    SELECT t.id, t.parent_id FROM tasks AS t JOIN up ON t.id = up.parent_id
)
SELECT EXISTS (SELECT 1 FROM up WHERE id = :task_id);

-- name: list_event_tasks_as_owner :many
-- One page of every task of an event, for its owner (GET /events/{id}/tasks), by id after
-- :after_id (the nil UUID for the first page). The owner is maintainer of every task: a range
-- on tasks_event_id_id_key in id order; the rollup per row is index-only on
-- tasks_parent_id_idx.
SELECT t.id, t.event_id, t.parent_id, t.title, t.description, t.duration_minutes,
    t.completed, t.completed_at, t.created_by, t.created_at, t.updated_at,
    'maintainer' AS my_role,
    (SELECT coalesce(sum(c.duration_minutes), 0) FROM tasks AS c WHERE c.parent_id = t.id)
        AS allocated_minutes
FROM tasks AS t
WHERE t.event_id = :event_id AND t.id > :after_id
ORDER BY t.id
LIMIT :max_rows;

-- name: list_event_tasks_as_member :many
-- One page of the tasks of an event that a member (not the owner) can see, by id after
-- :after_id: the subtrees of the tasks the caller holds a role on, each task with the highest
-- role reaching it. Driven by what the caller sees, not by the event's size: the roots from
-- task_members_user_id_idx (their event checked by tasks_pkey), walked down by
-- tasks_parent_id_idx, the page's rows by tasks_pkey; the rollup per row is index-only on
-- tasks_parent_id_idx.
WITH RECURSIVE reached (id, rank) AS (
    SELECT m.task_id, CASE m.role WHEN 'maintainer' THEN 2 ELSE 1 END
    FROM task_members AS m
    JOIN tasks AS root ON root.id = m.task_id
    WHERE m.user_id = :caller_id AND root.event_id = :event_id
    UNION
    SELECT c.id, reached.rank FROM reached JOIN tasks AS c ON c.parent_id = reached.id
), visible AS (
    SELECT id, max(rank) AS rank FROM reached GROUP BY id
), page AS (
    SELECT id, rank FROM visible WHERE id > :after_id ORDER BY id LIMIT :max_rows
)
SELECT t.id, t.event_id, t.parent_id, t.title, t.description, t.duration_minutes,
    t.completed, t.completed_at, t.created_by, t.created_at, t.updated_at,
    CASE WHEN p.rank = 2 THEN 'maintainer' ELSE 'collaborator' END AS my_role,
    (SELECT coalesce(sum(c.duration_minutes), 0) FROM tasks AS c WHERE c.parent_id = t.id)
        AS allocated_minutes
FROM page AS p
JOIN tasks AS t ON t.id = p.id
ORDER BY t.id;

-- name: list_task_collaborators :many
-- One page of the users holding a role on a task (GET /tasks/{id}/collaborators), by user_id
-- after :after_user_id (the nil UUID for the first page): granted on the task itself or
-- inherited from an ancestor, each user once with the highest role and, in task_id, the
-- nearest task that grants it. Walks up by tasks_pkey into one array (nearest first), whose
-- memberships are one probe each on task_members_pkey; names by users_pkey.
WITH RECURSIVE path (id, parent_id, depth) AS (
    SELECT id, parent_id, 1 FROM tasks WHERE id = :task_id
    UNION ALL
    SELECT up.id, up.parent_id, path.depth + 1 FROM tasks AS up JOIN path ON up.id = path.parent_id
), chain AS (
    SELECT array_agg(id ORDER BY depth) AS ids FROM path
), roles AS (
    SELECT DISTINCT ON (m.user_id) m.user_id, m.role, m.task_id
    FROM task_members AS m
    WHERE m.task_id = any((SELECT ids FROM chain)::uuid[])
    ORDER BY m.user_id, (m.role = 'maintainer') DESC,
        array_position((SELECT ids FROM chain)::uuid[], m.task_id)
)
SELECT r.user_id, u.name, r.role, r.task_id
FROM roles AS r
JOIN users AS u ON u.id = r.user_id
WHERE r.user_id > :after_user_id
ORDER BY r.user_id
LIMIT :max_rows;

-- name: list_task_member_ids :many
-- Every user a role reaches a task by (the recipients of its task_update notifications): the
-- members of the task and its ancestors, and the event's owner. Walks up by tasks_pkey into
-- one array, whose memberships are one probe each on task_members_pkey; the owner by
-- events_pkey.
WITH RECURSIVE path (id, parent_id) AS (
    SELECT id, parent_id FROM tasks WHERE id = :task_id
    UNION
    SELECT up.id, up.parent_id FROM tasks AS up JOIN path ON up.id = path.parent_id
)
SELECT m.user_id
FROM task_members AS m
WHERE m.task_id = any(ARRAY(SELECT id FROM path))
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
