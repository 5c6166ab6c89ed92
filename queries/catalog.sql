-- name: list_index_names :many
-- Every index of the public schema, so check-sql can verify that the indexes the other
-- statements' comments name exist. Reads pg_class (a catalog lookup, no user table).
SELECT c.relname AS name
FROM pg_class AS c
JOIN pg_namespace AS n ON n.oid = c.relnamespace
WHERE c.relkind = 'i' AND n.nspname = 'public';

-- name: list_schema_tables :many
-- `run.py schema` (migrations/schema.sql): each table of the public schema as a CREATE TABLE
-- statement (columns in order, with type, default and NOT NULL), by name. Catalog scan of
-- pg_attribute through pg_attribute_relid_attnum_index; small, run by hand and in one test.
SELECT
    c.relname AS table_name,
    'CREATE TABLE ' || c.relname || E' (\n' || string_agg(
        '    ' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
        || coalesce(' DEFAULT ' || pg_get_expr(d.adbin, d.adrelid), '')
        || CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE '' END,
        E',\n' ORDER BY a.attnum
    ) || E'\n);' AS statement
FROM pg_class AS c
JOIN pg_namespace AS n ON n.oid = c.relnamespace
JOIN pg_attribute AS a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
LEFT JOIN pg_attrdef AS d ON d.adrelid = c.oid AND d.adnum = a.attnum
WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')
GROUP BY c.relname
ORDER BY c.relname;

-- name: list_schema_constraints :many
-- `run.py schema`: every primary key, unique, foreign key, check and exclusion constraint of
-- the public schema as an ALTER TABLE statement, by table and name, as PostgreSQL prints it
-- (NOT NULL, which PostgreSQL 18 also lists here, is already in the tables); foreign keys are
-- marked so the file can add them after every table. Catalog scan of pg_constraint.
SELECT
    c.relname AS table_name,
    con.contype = 'f' AS is_foreign_key,
    'ALTER TABLE ' || c.relname || ' ADD CONSTRAINT ' || con.conname || ' '
        || pg_get_constraintdef(con.oid) || ';' AS statement
FROM pg_constraint AS con
JOIN pg_class AS c ON c.oid = con.conrelid
JOIN pg_namespace AS n ON n.oid = c.relnamespace
WHERE n.nspname = 'public' AND con.contype IN ('p', 'u', 'f', 'c', 'x')
ORDER BY c.relname, con.conname;

-- name: list_schema_indexes :many
-- `run.py schema`: every index of the public schema that no constraint owns, by name, as
-- PostgreSQL prints it. Catalog scan of pg_index.
SELECT
    ic.relname AS index_name,
    pg_get_indexdef(i.indexrelid) AS definition
FROM pg_index AS i
JOIN pg_class AS ic ON ic.oid = i.indexrelid
JOIN pg_namespace AS n ON n.oid = ic.relnamespace
WHERE n.nspname = 'public'
    AND NOT EXISTS (SELECT 1 FROM pg_constraint AS con WHERE con.conindid = i.indexrelid)
ORDER BY ic.relname;

-- name: list_schema_routines :many
-- `run.py schema`: every view, function, trigger and sequence of the public schema, as
-- PostgreSQL prints it, so a migration that adds one is seen in schema.sql too. Catalog scans.
SELECT kind, name, definition
FROM (
    SELECT 'view' AS kind, c.relname::text AS name,
        'CREATE VIEW ' || c.relname || ' AS' || chr(10) || pg_get_viewdef(c.oid) AS definition
    FROM pg_class AS c
    JOIN pg_namespace AS n ON n.oid = c.relnamespace
    WHERE n.nspname = 'public' AND c.relkind IN ('v', 'm')
    UNION ALL
    SELECT 'function', p.proname::text, pg_get_functiondef(p.oid)
    FROM pg_proc AS p
    JOIN pg_namespace AS n ON n.oid = p.pronamespace
    WHERE n.nspname = 'public'
    UNION ALL
    SELECT 'trigger', t.tgname::text, pg_get_triggerdef(t.oid)
    FROM pg_trigger AS t
    JOIN pg_class AS c ON c.oid = t.tgrelid
    JOIN pg_namespace AS n ON n.oid = c.relnamespace
    WHERE n.nspname = 'public' AND NOT t.tgisinternal
    UNION ALL
    SELECT 'sequence', c.relname::text, 'CREATE SEQUENCE ' || c.relname
    FROM pg_class AS c
    JOIN pg_namespace AS n ON n.oid = c.relnamespace
    WHERE n.nspname = 'public' AND c.relkind = 'S'
) AS routines
ORDER BY kind, name;
