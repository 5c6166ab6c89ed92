-- name: notify_news_missing :value
-- The stream watch of a process that cannot publish to Redis tells every process of the
-- deployment (each LISTENs on :channel on a connection of its own) that live news may be
-- missing, so their watches read PostgreSQL too. Sent at most twice a second, and only while
-- publishing fails; touches no table.
SELECT pg_notify(:channel, '');
