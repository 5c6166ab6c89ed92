-- 0003: per-user notifications, numbered 1, 2, 3... per user with no gaps, in commit order.
-- notification_counters holds each user's last seq; a writer bumps the counter rows of all its
-- recipients (in user_id order, so overlapping writers cannot deadlock) and inserts the
-- notifications in the same statement and transaction: a higher seq never commits first.
-- Locking: creates new tables only.

CREATE TABLE notification_counters (
    user_id uuid PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    last_seq bigint NOT NULL DEFAULT 0,
    CONSTRAINT notification_counters_last_seq_check CHECK (last_seq >= 0)
);

CREATE TABLE notifications (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    seq bigint NOT NULL,
    type text NOT NULL,
    data jsonb NOT NULL DEFAULT '{}'::jsonb,
    read_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT notifications_seq_check CHECK (seq > 0),
    CONSTRAINT notifications_type_check CHECK (
        type IN ('invite', 'system', 'story_update', 'comment', 'task_update', 'message')
    )
);

-- Replay after a Last-Event-ID and the newest-first list: a range scan per user.
CREATE UNIQUE INDEX notifications_user_id_seq_key ON notifications (user_id, seq);
-- ?unread=true and unread_count: only unread rows are in it.
CREATE INDEX notifications_unread_idx ON notifications (user_id, seq) WHERE read_at IS NULL;
-- Retention deletes the oldest rows first.
CREATE INDEX notifications_created_at_idx ON notifications (created_at);
