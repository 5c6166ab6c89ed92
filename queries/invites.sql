-- Invites to a role on a task (API.md, "Invite"). Stored status is pending, accepted, rejected
-- or revoked; a pending invite whose expires_at has passed reads as expired, computed in every
-- statement that returns an invite:
--     CASE WHEN status = 'pending' AND expires_at <= statement_timestamp() THEN 'expired' ...
-- statement_timestamp() rather than now(): a write that waited for a lock judges expiry at the
-- moment it acts, not when its transaction began (in a one-statement read they are the same).
-- Writers that change an invite's state hold its task's row lock (tasks.lock_task or
-- lock_invite_task below) first, then read, then write: one at a time per task.

-- name: find_invitee :value
-- The id of the user an invite is for, by id or by email in any case (the other one NULL);
-- NULL when there is no such user (POST /invites answers 422 on the field it was given, and
-- creates nobody). The row is held FOR KEY SHARE until the transaction ends, so the user
-- cannot be deleted between this answer and the invite's INSERT (whose foreign key would
-- fail, and could not tell user_id from email); a deletion under way is waited for, and then
-- there is no such user. A BitmapOr of users_pkey and users_email_key (lower(email)).
SELECT id
FROM users
WHERE id = :user_id OR lower(email) = lower(:email)
FOR KEY SHARE;

-- name: has_live_pending_invite :value
-- Whether the task has a pending invite for the user that has not expired (POST /invites:
-- then 409). Asked under the task's row lock, so racing creates see each other's commits.
-- invites_task_id_invitee_id_idx.
SELECT EXISTS (
    SELECT 1
    FROM invites
    WHERE task_id = :task_id AND invitee_id = :invitee_id
      AND status = 'pending' AND expires_at > statement_timestamp()
) AS pending;

-- name: insert_invite :one
-- Creates a pending invite (POST /invites); expires_at NULL means 7 days (168 hours, whatever
-- the session's time zone) from now. Inserts into invites_pkey and the three invites_* indexes.
INSERT INTO invites (task_id, inviter_id, invitee_id, role, expires_at)
VALUES (
    :task_id, :inviter_id, :invitee_id, :role,
    coalesce(:expires_at::timestamptz, now() + interval '168 hours')
)
RETURNING id, task_id, inviter_id, invitee_id, role,
    CASE WHEN status = 'pending' AND expires_at <= statement_timestamp() THEN 'expired'
         ELSE status END AS status,
    expires_at, created_at, responded_at;

-- name: lock_invite_task :value
-- Locks the row of an invite's task until the transaction ends and returns the task's id
-- (NULL: no such invite, or its task is being deleted with it). Taken before an invite is
-- answered or revoked, so racing answers take turns with each other and with invite creates
-- and role changes on the task; FOR NO KEY UPDATE, as tasks.lock_task. invites_pkey, tasks_pkey.
SELECT t.id
FROM invites AS i
JOIN tasks AS t ON t.id = i.task_id
WHERE i.id = :invite_id
FOR NO KEY UPDATE OF t;

-- name: get_invite_access :one
-- One invite, as it reads now, with the caller's role on its task (the highest of the caller's
-- roles on the task and its ancestors; maintainer for the event's owner; NULL: none): what
-- PATCH /invites/{id} decides on. invites_pkey; the task's ancestors walked up by tasks_pkey,
-- the caller's memberships on them by task_members_pkey, the event by events_pkey.
WITH RECURSIVE invite AS (
    SELECT id, task_id, inviter_id, invitee_id, role, status, expires_at, created_at,
        responded_at
    FROM invites
    WHERE id = :invite_id
), path (id, parent_id) AS (
    SELECT t.id, t.parent_id FROM tasks AS t JOIN invite ON t.id = invite.task_id
    UNION
    SELECT up.id, up.parent_id FROM tasks AS up JOIN path ON up.id = path.parent_id
)
SELECT i.id, i.task_id, i.inviter_id, i.invitee_id, i.role,
    CASE WHEN i.status = 'pending' AND i.expires_at <= statement_timestamp() THEN 'expired'
         ELSE i.status END AS status,
    i.expires_at, i.created_at, i.responded_at,
    CASE
        WHEN e.user_id = :caller_id THEN 'maintainer'
        ELSE (
            SELECT CASE WHEN bool_or(m.role = 'maintainer') THEN 'maintainer'
                        WHEN count(*) > 0 THEN 'collaborator' END
            FROM path JOIN task_members AS m ON m.task_id = path.id AND m.user_id = :caller_id
        )
    END AS caller_role
FROM invite AS i
JOIN tasks AS t ON t.id = i.task_id
JOIN events AS e ON e.id = t.event_id;

-- name: answer_invite :one
-- Accepts, rejects or revokes an invite (PATCH /invites/{id}) only while it is pending and not
-- expired; no row otherwise (409). The condition is evaluated on the row as it is once any
-- racing answer has committed, so of two racing answers exactly one gets a row. An answered
-- invite is never pending, so its stored status is what it reads as. invites_pkey.
UPDATE invites
SET status = :status, responded_at = statement_timestamp()
WHERE id = :invite_id AND status = 'pending' AND expires_at > statement_timestamp()
RETURNING id, task_id, inviter_id, invitee_id, role, status, expires_at, created_at,
    responded_at;

-- name: grant_invited_role :exec
-- Accepting grants the invite's role directly on its task: a new membership, or an upgrade of
-- a direct collaborator to maintainer; a direct maintainer stays one (never a downgrade).
-- task_members_pkey.
INSERT INTO task_members (task_id, user_id, role)
VALUES (:task_id, :user_id, :role)
ON CONFLICT (task_id, user_id) DO UPDATE SET role = excluded.role
WHERE task_members.role = 'collaborator' AND excluded.role = 'maintainer';

-- name: list_received_invites :many
-- One page of a user's received invites (GET /invites/received/{id}), newest first, keyset on
-- (created_at, id) before the cursor (datetime.max and the largest uuid for the first page);
-- :status NULL for all, else only those that read as it (expired included). Backward range
-- scan on invites_invitee_id_created_at_idx, the status a filter on the way.
SELECT id, task_id, inviter_id, invitee_id, role, status, expires_at, created_at, responded_at
FROM (
    SELECT id, task_id, inviter_id, invitee_id, role,
        CASE WHEN status = 'pending' AND expires_at <= statement_timestamp() THEN 'expired'
             ELSE status END AS status,
        expires_at, created_at, responded_at
    FROM invites
    WHERE invitee_id = :user_id
      AND (created_at, id) < (:before_created::timestamptz, :before_id::uuid)
) AS received
WHERE :status::text IS NULL OR status = :status
ORDER BY created_at DESC, id DESC
LIMIT :max_rows;

-- name: list_sent_invites :many
-- One page of the invites a user sent (GET /invites/sent/{id}), as list_received_invites.
-- Backward range scan on invites_inviter_id_created_at_idx.
SELECT id, task_id, inviter_id, invitee_id, role, status, expires_at, created_at, responded_at
FROM (
    SELECT id, task_id, inviter_id, invitee_id, role,
        CASE WHEN status = 'pending' AND expires_at <= statement_timestamp() THEN 'expired'
             ELSE status END AS status,
        expires_at, created_at, responded_at
    FROM invites
    WHERE inviter_id = :user_id
      AND (created_at, id) < (:before_created::timestamptz, :before_id::uuid)
) AS sent
WHERE :status::text IS NULL OR status = :status
ORDER BY created_at DESC, id DESC
LIMIT :max_rows;
