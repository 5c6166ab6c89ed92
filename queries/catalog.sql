-- name: list_index_names
-- Every index of the public schema, so check-sql can verify that the indexes the other
-- statements' comments name exist. Reads pg_class (a catalog lookup, no user table).
SELECT c.relname AS name
FROM pg_class AS c
JOIN pg_namespace AS n ON n.oid = c.relnamespace
WHERE c.relkind = 'i' AND n.nspname = 'public';
