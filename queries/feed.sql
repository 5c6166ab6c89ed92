-- name: insert_values :many
-- Appends a batch of values (POST /add-value/, group commit) with gapless ids in commit order:
-- bumps the one feed_counter row by the batch size and numbers the batch from the old value.
-- The counter's row lock is held until COMMIT, so a later batch can never commit a lower id.
-- Serves from feed_counter_pkey (one row); inserts into feed_values_pkey.
WITH bumped AS (
    UPDATE feed_counter
    SET last_id = last_id + cardinality(:values::text[])
    WHERE singleton
    RETURNING last_id - cardinality(:values::text[]) AS base
)
INSERT INTO feed_values (id, value)
SELECT bumped.base + v.ord, v.value
FROM bumped, unnest(:values::text[]) WITH ORDINALITY AS v(value, ord)
RETURNING id, created_at;

-- name: list_values_after :many
-- Replay for GET /events/ and the stream watch: the values after an id, oldest first, at most
-- :max_rows of them and only as many as fit in about :max_bytes of SSE frames (always at least
-- the first), so a page held for a client that does not read stays small. A value's frame is
-- its text plus "data: " and a line break per line, plus its id line.
-- Range scan on feed_values_pkey; the running sum is over those few rows only.
SELECT id, value
FROM (
    SELECT
        id,
        value,
        sum(frame_bytes) OVER (ORDER BY id) - frame_bytes AS before_bytes
    FROM (
        SELECT
            id,
            value,
            octet_length(value) + 7 * (regexp_count(value, E'\r\n|\r|\n') + 1) + 24
                AS frame_bytes
        FROM feed_values
        WHERE id > :after_id
        ORDER BY id
        LIMIT :max_rows
    ) AS page
) AS sized
WHERE before_bytes < :max_bytes
ORDER BY id;

-- name: list_values_before :many
-- One page of GET /values, newest first, keyset on id (never OFFSET).
-- Backward range scan on feed_values_pkey.
SELECT id, value, created_at
FROM feed_values
WHERE id < :before_id
ORDER BY id DESC
LIMIT :max_rows;

-- name: get_feed_bounds :one
-- The oldest kept and the newest committed value id, to tell a resumable Last-Event-ID from one
-- that needs a reset. min(id) reads one end of feed_values_pkey; the counter is one row.
SELECT
    (SELECT min(id) FROM feed_values) AS oldest_id,
    (SELECT last_id FROM feed_counter WHERE singleton) AS newest_id;

-- name: prune_values :exec
-- Retention: deletes the oldest values by id, up to (not including) the first one created at
-- or after :cutoff, at most :batch_size per call. created_at is when a transaction started and
-- ids follow commit order, so they can disagree; cutting by id keeps the kept ids one
-- contiguous range (a resuming client never skips a hole without a reset). Reads the low end
-- of feed_values_pkey; called in a loop until it deletes fewer than :batch_size. The doomed
-- ids go to the DELETE as one array (= ANY), so each is probed in feed_values_pkey: as an
-- IN (subquery) the planner may hash-join a batch of 10,000 over a seq scan of the table
-- (PostgreSQL 18 did, on 100,000 rows).
WITH head AS (
    SELECT id, created_at
    FROM feed_values
    ORDER BY id
    LIMIT :batch_size
)
DELETE FROM feed_values
WHERE id = any(array(
    SELECT id
    FROM head
    WHERE id < coalesce(
        (SELECT min(id) FROM head WHERE created_at >= :cutoff), 9223372036854775807
    )
));
