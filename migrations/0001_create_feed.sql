-- 0001: the live value feed.
-- feed_values holds every value posted to /add-value/; its id is the SSE `id:` and a gapless
-- counter (feed_counter, one row) hands ids out in commit order: a writer bumps the counter row
-- and inserts in one statement, so the row lock orders writers until COMMIT.
-- Locking: creates new tables only; takes no lock on existing objects.

CREATE TABLE feed_counter (
    singleton boolean PRIMARY KEY DEFAULT true,
    last_id bigint NOT NULL DEFAULT 0,
    CONSTRAINT feed_counter_singleton_check CHECK (singleton),
    CONSTRAINT feed_counter_last_id_check CHECK (last_id >= 0)
);

INSERT INTO feed_counter (singleton, last_id) VALUES (true, 0);

CREATE TABLE feed_values (
    id bigint PRIMARY KEY,
    value text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT feed_values_id_check CHECK (id > 0),
    CONSTRAINT feed_values_value_check CHECK (char_length(value) BETWEEN 1 AND 10000)
);
