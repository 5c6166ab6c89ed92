-- name: create_migrations_table :exec
-- Creates the table that records applied migrations, if it is not there yet.
-- Runs before every migrate; primary key schema_migrations_pkey on version.
CREATE TABLE IF NOT EXISTS schema_migrations (
    version integer PRIMARY KEY,
    name text NOT NULL,
    checksum text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);

-- name: lock_migrations :value
-- Session advisory lock that makes concurrent migrators (several processes starting at once)
-- take turns; the key is an arbitrary constant owned by this service. No table, no index.
SELECT pg_advisory_lock(:lock_key);

-- name: unlock_migrations :value
-- Releases the advisory lock taken by lock_migrations.
SELECT pg_advisory_unlock(:lock_key);

-- name: list_applied_migrations :many
-- Every applied migration, oldest first; scans schema_migrations_pkey (a handful of rows).
SELECT version, name, checksum, applied_at
FROM schema_migrations
ORDER BY version;

-- name: record_migration :exec
-- Records one applied migration, inside the same transaction as the migration itself.
INSERT INTO schema_migrations (version, name, checksum)
VALUES (:version, :name, :checksum);
