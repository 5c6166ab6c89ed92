-- Stories of a task and their revisions (API.md, "Story"). Who may see a story is the role
-- reaching its task, derived when read as queries/tasks.sql does: walk up from the task by
-- tasks_pkey, the caller's memberships on the path by task_members_pkey, the event's owner
-- by events_pkey. A revision's content is a snapshot or a delta against the revision before
-- (migrations/0006_create_stories.sql); a revision is rebuilt from the chain that starts at
-- its snapshot, read in one range of story_revisions_pkey.

-- name: get_story_access :one
-- One story with the caller's role on its task (NULL: none reaches it) and where its chain
-- of deltas stands. stories_pkey, then the task's ancestors by tasks_pkey, memberships by
-- task_members_pkey, the event by events_pkey.
WITH RECURSIVE story AS (
    SELECT id, task_id, title, content, revision, author_id, snapshot_revision, chain_bytes,
        created_at, updated_at
    FROM stories
    WHERE id = :story_id
), path (id, parent_id) AS (
    SELECT t.id, t.parent_id FROM tasks AS t JOIN story ON t.id = story.task_id
    UNION
    SELECT up.id, up.parent_id FROM tasks AS up JOIN path ON up.id = path.parent_id
)
SELECT s.id, s.task_id, s.title, s.content, s.revision, s.author_id, s.snapshot_revision,
    s.chain_bytes, s.created_at, s.updated_at,
    CASE
        WHEN e.user_id = :caller_id THEN 'maintainer'
        ELSE (
            SELECT CASE WHEN bool_or(m.role = 'maintainer') THEN 'maintainer'
                        WHEN count(*) > 0 THEN 'collaborator' END
            FROM path JOIN task_members AS m ON m.task_id = path.id AND m.user_id = :caller_id
        )
    END AS my_role
FROM story AS s
JOIN tasks AS t ON t.id = s.task_id
JOIN events AS e ON e.id = t.event_id;

-- name: get_story_history_access :one
-- A story's id, current revision and author with the caller's role on its task (NULL: none
-- reaches it): what reading its history needs (revisions, one revision, a diff), which comes
-- from story_revisions. Neither title nor content is read, so the current content's TOAST
-- (up to 512 KiB) is never fetched. stories_pkey, then as get_story_access: the task's
-- ancestors by tasks_pkey, memberships by task_members_pkey, the event by events_pkey.
WITH RECURSIVE path (id, parent_id) AS (
    SELECT t.id, t.parent_id
    FROM tasks AS t
    JOIN stories AS s ON t.id = s.task_id
    WHERE s.id = :story_id
    UNION
    SELECT up.id, up.parent_id FROM tasks AS up JOIN path ON up.id = path.parent_id
)
SELECT s.id, s.revision, s.author_id,
    CASE
        WHEN e.user_id = :caller_id THEN 'maintainer'
        ELSE (
            SELECT CASE WHEN bool_or(m.role = 'maintainer') THEN 'maintainer'
                        WHEN count(*) > 0 THEN 'collaborator' END
            FROM path JOIN task_members AS m ON m.task_id = path.id AND m.user_id = :caller_id
        )
    END AS my_role
FROM stories AS s
JOIN tasks AS t ON t.id = s.task_id
JOIN events AS e ON e.id = t.event_id
WHERE s.id = :story_id;

-- name: lock_story_access :one
-- get_story_access for a write, in one statement with the lock: the story row is locked
-- (FOR NO KEY UPDATE, until the transaction ends) as it is read, so writers of one story take
-- turns and each reads the revision and content the previous one committed (under READ
-- COMMITTED a row updated while the lock was awaited is read again at its latest version).
-- The role comes from the statement's snapshot, taken when it started: a membership that
-- ends while a write waits for the lock is still seen, as if the write had come first. No
-- row: no such story. FOR NO KEY UPDATE leaves the foreign-key checks of rows that
-- reference the story (FOR KEY SHARE) unblocked. Indexes as get_story_access.
WITH RECURSIVE story AS (
    SELECT id, task_id, title, content, revision, author_id, snapshot_revision, chain_bytes,
        created_at, updated_at
    FROM stories
    WHERE id = :story_id
    FOR NO KEY UPDATE
), path (id, parent_id) AS (
    SELECT t.id, t.parent_id FROM tasks AS t JOIN story ON t.id = story.task_id
    UNION
    SELECT up.id, up.parent_id FROM tasks AS up JOIN path ON up.id = path.parent_id
)
SELECT s.id, s.task_id, s.title, s.content, s.revision, s.author_id, s.snapshot_revision,
    s.chain_bytes, s.created_at, s.updated_at,
    CASE
        WHEN e.user_id = :caller_id THEN 'maintainer'
        ELSE (
            SELECT CASE WHEN bool_or(m.role = 'maintainer') THEN 'maintainer'
                        WHEN count(*) > 0 THEN 'collaborator' END
            FROM path JOIN task_members AS m ON m.task_id = path.id AND m.user_id = :caller_id
        )
    END AS my_role
FROM story AS s
JOIN tasks AS t ON t.id = s.task_id
JOIN events AS e ON e.id = t.event_id;

-- name: insert_story :one
-- Creates a story (POST /stories) at revision 1, and that revision as a snapshot, in one
-- statement. stories_pkey, story_revisions_pkey.
WITH created AS (
    INSERT INTO stories (task_id, title, content, author_id)
    VALUES (:task_id, :title, :content, :author_id)
    RETURNING id, task_id, title, content, revision, author_id, snapshot_revision,
        chain_bytes, created_at, updated_at
), first AS (
    INSERT INTO story_revisions (story_id, revision, title, author_id, created_at,
        snapshot_revision, content)
    SELECT id, 1, title, author_id, created_at, 1, content FROM created
)
SELECT id, task_id, title, content, revision, author_id, snapshot_revision, chain_bytes,
    created_at, updated_at
FROM created;

-- name: update_story :one
-- A new revision (PUT, PATCH .../content, restore): the story row takes the new title and
-- content and the next revision number, and the revision is stored (as a snapshot when
-- :content_snapshot is not NULL, else as :delta against the revision before), in one
-- statement. Only when the story is still at :revision (the caller holds its lock, so this
-- is a second guard): no row otherwise. The content is not returned: the caller sent it
-- (up to 512 KiB that would cross the wire back for nothing). Timed by statement_timestamp(),
-- not now(): the transaction began before it waited for the story's lock, and the history's
-- times must follow its revision numbers. stories_pkey, story_revisions_pkey.
WITH updated AS (
    UPDATE stories
    SET title = :title,
        content = :content,
        revision = revision + 1,
        snapshot_revision = :snapshot_revision,
        chain_bytes = :chain_bytes,
        updated_at = statement_timestamp()
    WHERE id = :story_id AND revision = :revision
    RETURNING id, task_id, title, revision, author_id, snapshot_revision, chain_bytes,
        created_at, updated_at
), stored AS (
    INSERT INTO story_revisions (story_id, revision, title, author_id, created_at,
        snapshot_revision, content, delta)
    SELECT id, revision, title, :editor_id, updated_at, snapshot_revision, :content_snapshot,
        :delta::jsonb
    FROM updated
)
SELECT id, task_id, title, revision, author_id, snapshot_revision, chain_bytes, created_at,
    updated_at
FROM updated;

-- name: delete_story :exec
-- Deletes a story; its revisions go with it through story_revisions_story_id_fkey (ON DELETE
-- CASCADE, found by the leading column of story_revisions_pkey), its comments through
-- comments_story_id_fkey (by the leading column of comments_story_id_position_key), their
-- versions and its comment counter likewise. stories_pkey.
DELETE FROM stories WHERE id = :story_id;

-- name: list_task_stories :many
-- One page of a task's stories (GET /tasks/{id}/stories), by id after :after_id (the nil
-- UUID for the first page). Range scan on stories_task_id_idx.
SELECT id, task_id, title, content, revision, author_id, snapshot_revision, chain_bytes,
    created_at, updated_at
FROM stories
WHERE task_id = :task_id AND id > :after_id
ORDER BY id
LIMIT :max_rows;

-- name: list_revision_chain :many
-- The revisions :first_revision..:last_revision of a story, preceded by every revision from
-- the snapshot that :first_revision is rebuilt from: enough to rebuild each of them in
-- order. No row when :first_revision does not exist. The content of the snapshots numbered in
-- :cached_snapshots is left out (NULL): the caller holds their lines (stories/snapshots.py),
-- and their TOAST is not fetched. The snapshot's number by one probe, the rows by one range,
-- both on story_revisions_pkey.
SELECT r.revision, r.title, r.author_id, r.created_at, r.snapshot_revision,
    CASE WHEN r.revision = ANY (:cached_snapshots::integer[]) THEN NULL ELSE r.content END
        AS content,
    r.delta
FROM story_revisions AS r
WHERE r.story_id = :story_id
  AND r.revision >= (
      SELECT f.snapshot_revision
      FROM story_revisions AS f
      WHERE f.story_id = :story_id AND f.revision = :first_revision
  )
  AND r.revision <= :last_revision
ORDER BY r.revision;
