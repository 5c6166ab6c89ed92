-- 0005: invites to a role on a task (API.md, "Invite"). A maintainer of a task invites a user
-- to be its maintainer or collaborator; the invitee accepts or rejects, the inviter or a
-- maintainer of the task revokes. Accepting grants the role (a task_members row) in the same
-- transaction.
--
-- Stored status is pending, accepted, rejected or revoked. "expired" is never stored: a
-- pending invite whose expires_at has passed reads as expired (queries/invites.sql computes
-- it in every statement that returns an invite), so nothing has to run when time passes.
--
-- One pending invite per (task, invitee), whatever the role: the invitee answers one open
-- offer per task, and a maintainer who wants another role revokes the first. No unique index
-- says so, because an expired invite is still stored as pending and must not block a new one,
-- and a partial index cannot name now(). The service enforces it under the task's row lock
-- (the lock that subtask creates and collaborator changes take): racing creates take turns,
-- and each checks in a later statement, which sees what the one before committed.
--
-- Deleting a task (with its subtree, or its event) deletes its invites: invites_task_id_fkey
-- cascades. Deleting a user (DELETE /users) deletes the invites it received (an offer to nobody
-- means nothing) and keeps the ones it sent with inviter_id NULL, as tasks keep created_by:
-- a pending one stays answerable (the offer was the task's, made by a maintainer of the time),
-- and any maintainer of the task may still revoke it.
-- notifications_type_check already allows invite: unchanged.
-- Locking: creates a new table only.

CREATE TABLE invites (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    task_id uuid NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    inviter_id uuid REFERENCES users (id) ON DELETE SET NULL,
    invitee_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role text NOT NULL,
    status text NOT NULL DEFAULT 'pending',
    expires_at timestamptz NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    responded_at timestamptz,
    CONSTRAINT invites_role_check CHECK (role IN ('maintainer', 'collaborator')),
    CONSTRAINT invites_status_check CHECK (status IN ('pending', 'accepted', 'rejected', 'revoked')),
    -- answered (accepted, rejected, revoked) exactly when responded_at says when
    CONSTRAINT invites_responded_at_check CHECK ((status = 'pending') = (responded_at IS NULL)),
    -- the 30-day limit is the service's rule; the database only keeps the order of the two
    CONSTRAINT invites_expires_at_check CHECK (expires_at > created_at),
    CONSTRAINT invites_invitee_id_check CHECK (invitee_id <> inviter_id)
);

-- Whether a task has a live pending invite for a user (POST /invites), and the cascade from
-- a deleted task.
CREATE INDEX invites_task_id_invitee_id_idx ON invites (task_id, invitee_id);
-- GET /invites/received/{user_id}: one invitee's invites, newest first; the cascade from a
-- deleted invitee.
CREATE INDEX invites_invitee_id_created_at_idx ON invites (invitee_id, created_at, id);
-- GET /invites/sent/{user_id}: one inviter's invites, newest first; SET NULL from a deleted
-- inviter.
CREATE INDEX invites_inviter_id_created_at_idx ON invites (inviter_id, created_at, id);
