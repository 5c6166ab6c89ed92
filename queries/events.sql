-- name: insert_event :one
-- Creates an event owned by the caller (POST /events).
INSERT INTO events (user_id, title, description, start_date, end_date)
VALUES (:user_id, :title, :description, :start_date, :end_date)
RETURNING id, user_id, title, description, start_date, end_date, created_at, updated_at;

-- name: get_event_access :one
-- One event and whether the caller is a member of any of its tasks: everything an access
-- decision on it needs (GET/PUT/DELETE /events/{id}, /events/{id}/tasks), in one statement.
-- events_pkey. Until tasks exist nobody is a member (the tasks issue adds the membership
-- lookup, and with it the caller's id).
SELECT id, user_id, title, description, start_date, end_date, created_at, updated_at,
    false AS caller_is_member
FROM events
WHERE id = :event_id;

-- name: get_event_access_for_update :one
-- The same, locking the event row until the transaction ends, for a change that depends on
-- what was read (PUT checks the new dates against the stored ones). events_pkey.
SELECT id, user_id, title, description, start_date, end_date, created_at, updated_at,
    false AS caller_is_member
FROM events
WHERE id = :event_id
FOR NO KEY UPDATE;

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
