-- name: insert_notifications :many
-- The one way to notify: for each recipient that is still a user (its row key-share locked,
-- so a concurrent DELETE /users waits for this transaction, or has already removed it and it
-- gets nothing), bumps its counter (rows locked in user_id order, so transactions notifying
-- overlapping users never deadlock) and inserts one notification with that user's next seq,
-- in the caller's transaction. The counter row lock is held until COMMIT, so a user's seqs
-- commit in order with no gaps. created_at is the time the counter was taken
-- (clock_timestamp(), not now(): the transaction may have begun long before it got the lock),
-- so a user's notifications are timed in the order of their seqs. users_pkey,
-- notification_counters_pkey, then inserts into notifications_user_id_seq_key.
WITH recipients AS (
    SELECT id AS user_id
    FROM users
    WHERE id = any(:user_ids::uuid[])
    ORDER BY id
    FOR KEY SHARE
),
bumped AS (
    INSERT INTO notification_counters (user_id, last_seq)
    SELECT user_id, 1
    FROM recipients
    ORDER BY user_id
    ON CONFLICT (user_id) DO UPDATE SET last_seq = notification_counters.last_seq + 1
    RETURNING user_id, last_seq, clock_timestamp() AS counted_at
)
INSERT INTO notifications (user_id, seq, type, data, created_at)
SELECT bumped.user_id, bumped.last_seq, :type, :data::jsonb, bumped.counted_at
FROM bumped
RETURNING id, user_id, seq, type, data, read_at, created_at;

-- name: insert_notifications_each :many
-- As insert_notifications, but each recipient with its own type and data (:types and :datas
-- in the order of :user_ids): one change that notifies some members in one way and others in
-- another (a story edit: mention to some, story_update to the rest) takes every counter lock
-- in one statement, in user_id order, like any other writer; timed as insert_notifications.
-- users_pkey,
-- notification_counters_pkey, then inserts into notifications_user_id_seq_key.
WITH wanted AS (
    SELECT w.user_id, w.type, w.data
    FROM unnest(:user_ids::uuid[], :types::text[], :datas::jsonb[]) AS w (user_id, type, data)
),
recipients AS (
    SELECT id AS user_id
    FROM users
    WHERE id = any(:user_ids::uuid[])
    ORDER BY id
    FOR KEY SHARE
),
bumped AS (
    INSERT INTO notification_counters (user_id, last_seq)
    SELECT user_id, 1
    FROM recipients
    ORDER BY user_id
    ON CONFLICT (user_id) DO UPDATE SET last_seq = notification_counters.last_seq + 1
    RETURNING user_id, last_seq, clock_timestamp() AS counted_at
)
INSERT INTO notifications (user_id, seq, type, data, created_at)
SELECT bumped.user_id, bumped.last_seq, wanted.type, wanted.data, bumped.counted_at
FROM bumped
JOIN wanted ON wanted.user_id = bumped.user_id
RETURNING id, user_id, seq, type, data, read_at, created_at;

-- name: list_notifications_after :many
-- SSE replay: one user's notifications after a seq, oldest first, at most :max_rows and only
-- as many as fit in :max_bytes of data (always at least the first).
-- Range scan on notifications_user_id_seq_key; the running sum is over those rows only.
SELECT id, user_id, seq, type, data, read_at, created_at
FROM (
    SELECT
        page.*,
        sum(octet_length(page.data::text)) OVER (ORDER BY page.seq) AS running,
        octet_length(page.data::text) AS size
    FROM (
        SELECT id, user_id, seq, type, data, read_at, created_at
        FROM notifications
        WHERE user_id = :user_id AND seq > :after_seq
        ORDER BY seq
        LIMIT :max_rows
    ) AS page
) AS sized
WHERE running - size < :max_bytes
ORDER BY seq;

-- name: list_notifications_after_many :many
-- The stream watch, while live news may be missing (Redis unreachable, a reconnect): for each
-- connected user, the notifications after the seq its streams stand at, at most :max_rows and
-- about :max_bytes of data per user (always at least one); one statement for every user of
-- the process. One range probe per user on notifications_user_id_seq_key.
SELECT n.id, n.user_id, n.seq, n.type, n.data, n.read_at, n.created_at
FROM unnest(:user_ids::uuid[], :after_seqs::bigint[]) AS wanted (user_id, after_seq)
CROSS JOIN LATERAL (
    SELECT page.id, page.user_id, page.seq, page.type, page.data, page.read_at, page.created_at
    FROM (
        SELECT
            id, user_id, seq, type, data, read_at, created_at,
            sum(octet_length(data::text)) OVER (ORDER BY seq) - octet_length(data::text)
                AS before_bytes
        FROM (
            SELECT id, user_id, seq, type, data, read_at, created_at
            FROM notifications
            WHERE user_id = wanted.user_id AND seq > wanted.after_seq
            ORDER BY seq
            LIMIT :max_rows
        ) AS rows
    ) AS page
    WHERE page.before_bytes < :max_bytes
) AS n
ORDER BY n.user_id, n.seq;

-- name: find_users_behind :value
-- The stream watch, every heartbeat interval: which of these users have a notification
-- committed after the seq their streams on this process stand at. Such news never reached this
-- process: the process that committed it died before publishing it, and nothing else tells.
-- One statement for every connected user; notification_counters_pkey probes.
SELECT array_agg(wanted.user_id) AS found
FROM unnest(:user_ids::uuid[], :after_seqs::bigint[]) AS wanted (user_id, after_seq)
JOIN notification_counters ON notification_counters.user_id = wanted.user_id
WHERE notification_counters.last_seq > wanted.after_seq;

-- name: get_notification_bounds :one
-- The oldest seq still kept and the newest committed one for a user, to tell a resumable
-- Last-Event-ID from one that needs a reset. notifications_user_id_seq_key (one end) and
-- notification_counters_pkey.
SELECT
    (SELECT min(seq) FROM notifications WHERE user_id = :user_id) AS oldest_seq,
    coalesce(
        (SELECT last_seq FROM notification_counters WHERE user_id = :user_id), 0
    ) AS newest_seq;

-- name: list_notifications :many
-- GET /notifications/{user_id}: one page, newest first, keyset on seq.
-- Backward range scan on notifications_user_id_seq_key.
SELECT id, user_id, seq, type, data, read_at, created_at
FROM notifications
WHERE user_id = :user_id AND seq < :before_seq
ORDER BY seq DESC
LIMIT :max_rows;

-- name: list_unread_notifications :many
-- GET /notifications/{user_id}?unread=true: one page of unread ones, newest first.
-- Backward range scan on the partial index notifications_unread_idx.
SELECT id, user_id, seq, type, data, read_at, created_at
FROM notifications
WHERE user_id = :user_id AND seq < :before_seq AND read_at IS NULL
ORDER BY seq DESC
LIMIT :max_rows;

-- name: count_unread_notifications :value
-- unread_count: counts one user's entries in the partial index notifications_unread_idx.
SELECT count(*)
FROM notifications
WHERE user_id = :user_id AND read_at IS NULL;

-- name: get_notification_by_id :one
-- One notification, for PATCH and its access check. notifications_pkey.
SELECT id, user_id, seq, type, data, read_at, created_at
FROM notifications
WHERE id = :notification_id;

-- name: set_notification_read :one
-- Marks read (keeping the first read_at) or unread. notifications_pkey.
UPDATE notifications
SET read_at = CASE WHEN :is_read THEN coalesce(read_at, now()) ELSE NULL END
WHERE id = :notification_id
RETURNING id, user_id, seq, type, data, read_at, created_at;

-- name: prune_notifications :exec
-- Retention, per user by seq: takes up to :batch_size notifications created before :cutoff,
-- oldest first, and for each user among them deletes every notification up to the highest
-- seq taken, but only below the user's first notification created at or after :cutoff.
-- created_at is when a transaction started and seq follows commit order, so they can
-- disagree; deleting only such prefixes keeps each user's kept seqs one contiguous range (no
-- hole a resuming client would skip), whatever a run deletes. Candidates from
-- notifications_created_at_idx; each user's rows and first young seq from
-- notifications_user_id_seq_key. Called in a loop until it deletes fewer than :batch_size.
WITH old AS (
    SELECT user_id, seq
    FROM notifications
    WHERE created_at < :cutoff
    ORDER BY created_at
    LIMIT :batch_size
),
per_user AS (
    SELECT
        old.user_id,
        max(old.seq) AS upto,
        (
            SELECT min(y.seq)
            FROM notifications AS y
            WHERE y.user_id = old.user_id AND y.created_at >= :cutoff
        ) AS first_young
    FROM old
    GROUP BY old.user_id
)
DELETE FROM notifications AS n
USING per_user
WHERE n.user_id = per_user.user_id
    AND n.seq <= per_user.upto
    AND (per_user.first_young IS NULL OR n.seq < per_user.first_young);
