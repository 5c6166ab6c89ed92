-- name: insert_values
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

-- name: list_values_after
-- Replay for GET /events/: the values after a client's Last-Event-ID, oldest first.
-- Range scan on feed_values_pkey.
SELECT id, value, created_at
FROM feed_values
WHERE id > :after_id
ORDER BY id
LIMIT :max_rows;

-- name: list_values_before
-- One page of GET /values, newest first, keyset on id (never OFFSET).
-- Backward range scan on feed_values_pkey.
SELECT id, value, created_at
FROM feed_values
WHERE id < :before_id
ORDER BY id DESC
LIMIT :max_rows;

-- name: get_feed_bounds
-- The oldest kept and the newest committed value id, to tell a resumable Last-Event-ID from one
-- that needs a reset. min(id) reads one end of feed_values_pkey; the counter is one row.
SELECT
    (SELECT min(id) FROM feed_values) AS oldest_id,
    (SELECT last_id FROM feed_counter WHERE singleton) AS newest_id;

-- name: prune_values
-- Retention: deletes up to :batch_size of the oldest values created before :cutoff, oldest
-- first, so the kept ids stay one contiguous range. Walks feed_values_pkey from its low end;
-- called in a loop until it deletes nothing.
DELETE FROM feed_values
WHERE id IN (
    SELECT id
    FROM feed_values
    WHERE created_at < :cutoff
    ORDER BY id
    LIMIT :batch_size
);
