-- name: insert_event :one
-- Creates an event owned by the caller (POST /events).
INSERT INTO events (user_id, title, description, start_date, end_date)
VALUES (:user_id, :title, :description, :start_date, :end_date)
RETURNING id, user_id, title, description, start_date, end_date, created_at, updated_at;

-- name: get_event_access :one
-- One event and whether the caller is a member of any of its tasks: everything an access
-- decision on it needs (GET/PUT/DELETE /events/{id}, /events/{id}/tasks), in one statement.
-- events_pkey; membership: the caller's memberships by task_members_user_id_idx, each
-- task's event by tasks_pkey.
SELECT e.id, e.user_id, e.title, e.description, e.start_date, e.end_date, e.created_at,
    e.updated_at,
    EXISTS (
        SELECT 1 FROM task_members AS m JOIN tasks AS t ON t.id = m.task_id
        WHERE m.user_id = :caller_id AND t.event_id = e.id
    ) AS caller_is_member
FROM events AS e
WHERE e.id = :event_id;

-- name: get_event_access_for_update :one
-- The same, locking the event row until the transaction ends, for a change that depends on
-- what was read (PUT checks the new dates against the stored ones). events_pkey,
-- task_members_user_id_idx, tasks_pkey.
SELECT e.id, e.user_id, e.title, e.description, e.start_date, e.end_date, e.created_at,
    e.updated_at,
    EXISTS (
        SELECT 1 FROM task_members AS m JOIN tasks AS t ON t.id = m.task_id
        WHERE m.user_id = :caller_id AND t.event_id = e.id
    ) AS caller_is_member
FROM events AS e
WHERE e.id = :event_id
FOR NO KEY UPDATE OF e;

-- name: update_event :one
-- Partial update (PUT /events/{id}): NULL keeps a column. The dates CHECK is the last line
-- behind the API's own check. events_pkey.
UPDATE events
SET title = coalesce(:title, title),
    description = coalesce(:description, description),
    start_date = coalesce(:start_date, start_date),
    end_date = coalesce(:end_date, end_date),
    updated_at = now()
WHERE id = :event_id
RETURNING id, user_id, title, description, start_date, end_date, created_at, updated_at;

-- name: delete_event :exec
-- Deletes an event and, through foreign keys, everything under it. events_pkey.
DELETE FROM events
WHERE id = :event_id;

-- name: list_events_by_owner :many
-- One page of a user's own events (GET /users/{id}/events), by (start_date, id) after the
-- cursor; pass after_start NULL for the first page. events_user_id_start_date_idx.
SELECT id, user_id, title, description, start_date, end_date, created_at, updated_at
FROM events
WHERE user_id = :user_id
  AND (:after_start::timestamptz IS NULL OR (start_date, id) > (:after_start, :after_id::uuid))
ORDER BY start_date, id
LIMIT :max_rows;
