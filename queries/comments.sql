-- Comments on stories and their versions (API.md, "Comment"). Who may see a comment is the
-- role reaching its story's task, derived when read as queries/stories.sql does: walk up from
-- the task by tasks_pkey, the caller's memberships on the path by task_members_pkey, the
-- event's owner by events_pkey. A comment's place in its story's thread is its position
-- (migrations/0008_create_comments.sql): the thread is read by ranges of
-- comments_story_id_position_key, never OFFSET.

-- name: get_comment_access :one
-- One comment with its story's task and the caller's role on it (NULL: none reaches it).
-- comments_pkey, the story by stories_pkey, the task's ancestors by tasks_pkey, memberships
-- by task_members_pkey, the event by events_pkey.
WITH RECURSIVE comment AS (
    SELECT c.id, c.story_id, c.parent_id, c.position, c.author_id, c.body, c.version,
        c.edited_at, c.deleted_at, c.created_at, c.updated_at, s.task_id
    FROM comments AS c
    JOIN stories AS s ON s.id = c.story_id
    WHERE c.id = :comment_id
), path (id, parent_id) AS (
    SELECT t.id, t.parent_id FROM tasks AS t JOIN comment ON t.id = comment.task_id
    UNION
    SELECT up.id, up.parent_id FROM tasks AS up JOIN path ON up.id = path.parent_id
)
SELECT c.id, c.story_id, c.parent_id, c.position, c.author_id, c.body, c.version,
    c.edited_at, c.deleted_at, c.created_at, c.updated_at, c.task_id,
    CASE
        WHEN e.user_id = :caller_id THEN 'maintainer'
        ELSE (
            SELECT CASE WHEN bool_or(m.role = 'maintainer') THEN 'maintainer'
                        WHEN count(*) > 0 THEN 'collaborator' END
            FROM path JOIN task_members AS m ON m.task_id = path.id AND m.user_id = :caller_id
        )
    END AS my_role
FROM comment AS c
JOIN tasks AS t ON t.id = c.task_id
JOIN events AS e ON e.id = t.event_id;

-- name: lock_comment :value
-- Locks one comment row until the transaction ends and returns its id (NULL: no such
-- comment). Every edit and deletion takes it first, so changes of one comment take turns and
-- each numbers its version after the one committed before it (no lost history entry). FOR NO
-- KEY UPDATE leaves the foreign-key checks of replies (FOR KEY SHARE) unblocked. comments_pkey.
SELECT id FROM comments WHERE id = :comment_id FOR NO KEY UPDATE;

-- name: get_comment_story :one
-- The story a would-be parent comment belongs to (no row: no such comment), to check that a
-- reply stays in its parent's story. comments_pkey.
SELECT story_id FROM comments WHERE id = :comment_id;

-- name: insert_comment :one
-- Creates a comment (POST /comments) at the story's next position, and its version 1, in one
-- statement; no row when the story is gone. The story row is held FOR KEY SHARE first (story
-- edits, FOR NO KEY UPDATE, go on; a deletion waits, or has deleted it and nothing is
-- written), then the story's counter row, locked until the transaction ends so positions
-- commit in order: taking them in that order, a creation never waits on a deletion's cascade
-- while holding the counter that cascade needs. The comment is timed once its counter is
-- held (clock_timestamp() in the counter's RETURNING; now() is the transaction's start, before
-- that wait), so created_at grows with position as the thread is read. stories_pkey,
-- comment_counters_pkey, comments_pkey, comment_versions_pkey.
WITH story AS (
    SELECT id FROM stories WHERE id = :story_id FOR KEY SHARE
), counter AS (
    INSERT INTO comment_counters AS k (story_id, last_position)
    SELECT id, 1 FROM story
    ON CONFLICT (story_id) DO UPDATE SET last_position = k.last_position + 1
    RETURNING story_id, last_position, clock_timestamp() AS at
), created AS (
    INSERT INTO comments (story_id, parent_id, position, author_id, body, created_at, updated_at)
    SELECT counter.story_id, :parent_id, counter.last_position, :author_id, :body, counter.at,
        counter.at
    FROM counter
    RETURNING id, story_id, parent_id, position, author_id, body, version, edited_at,
        deleted_at, created_at, updated_at
), first AS (
    INSERT INTO comment_versions (comment_id, version, action, body, actor_id, created_at)
    SELECT id, 1, 'created', body, author_id, created_at FROM created
)
SELECT id, story_id, parent_id, position, author_id, body, version, edited_at, deleted_at,
    created_at, updated_at
FROM created;

-- name: edit_comment :one
-- An edit (PUT /comments/{id}): the comment takes the new body and its next version, and the
-- version is stored with that body, in one statement. Only while the comment is at :version
-- and not deleted (the caller holds its lock, so this is a second guard): no row otherwise.
-- Timed by statement_timestamp(), not now(): the transaction began before it waited for the
-- comment's lock, so a change that waited longer would come later in the history with an
-- earlier time; this statement starts only once the change before it has committed.
-- comments_pkey, comment_versions_pkey.
WITH edited AS (
    UPDATE comments
    SET body = :body, version = version + 1, edited_at = statement_timestamp(),
        updated_at = statement_timestamp()
    WHERE id = :comment_id AND version = :version AND deleted_at IS NULL
    RETURNING id, story_id, parent_id, position, author_id, body, version, edited_at,
        deleted_at, created_at, updated_at
), stored AS (
    INSERT INTO comment_versions (comment_id, version, action, body, actor_id, created_at)
    SELECT id, version, 'edited', body, :actor_id, updated_at FROM edited
)
SELECT id, story_id, parent_id, position, author_id, body, version, edited_at, deleted_at,
    created_at, updated_at
FROM edited;

-- name: delete_comment :one
-- A soft deletion (DELETE /comments/{id}): the comment is marked deleted at its next version
-- (it keeps its row, its place and its replies), and that version is stored without a body,
-- in one statement. Only while the comment is at :version and not deleted yet: no row
-- otherwise. Timed by statement_timestamp() as edit_comment is. comments_pkey,
-- comment_versions_pkey.
WITH deleted AS (
    UPDATE comments
    SET version = version + 1, deleted_at = statement_timestamp(),
        updated_at = statement_timestamp()
    WHERE id = :comment_id AND version = :version AND deleted_at IS NULL
    RETURNING id, story_id, parent_id, position, author_id, body, version, edited_at,
        deleted_at, created_at, updated_at
), stored AS (
    INSERT INTO comment_versions (comment_id, version, action, body, actor_id, created_at)
    SELECT id, version, 'deleted', NULL, :actor_id, updated_at FROM deleted
)
SELECT id, story_id, parent_id, position, author_id, body, version, edited_at, deleted_at,
    created_at, updated_at
FROM deleted;

-- name: list_story_comments :many
-- One page of a story's thread (GET /stories/{id}/comments), oldest first, after position
-- :after_position (0 for the first page), with the caller's role on the story's task in the
-- same statement: no row when there is no such story; one row whose comment columns are NULL
-- when the page is empty or no role reaches the task (then no comment is read at all). Each
-- comment comes as its API body, `rendered` (row_to_json), which the service sends as it is
-- (server/comments/schemas.py comment_json writes the same body for one comment; a deleted
-- one is its placeholder: body null; timestamps UTC, ".ffffff" only with a fraction of a
-- second). tests/test_comments.py compares the two.
-- stories_pkey, the role as get_comment_access finds it, then one range scan on
-- comments_story_id_position_key.
WITH RECURSIVE story AS (
    SELECT id, task_id FROM stories WHERE id = :story_id
), path (id, parent_id) AS (
    SELECT t.id, t.parent_id FROM tasks AS t JOIN story ON t.id = story.task_id
    UNION
    SELECT up.id, up.parent_id FROM tasks AS up JOIN path ON up.id = path.parent_id
), access AS (
    SELECT s.id, s.task_id,
        CASE
            WHEN e.user_id = :caller_id THEN 'maintainer'
            ELSE (
                SELECT CASE WHEN bool_or(m.role = 'maintainer') THEN 'maintainer'
                            WHEN count(*) > 0 THEN 'collaborator' END
                FROM path JOIN task_members AS m
                    ON m.task_id = path.id AND m.user_id = :caller_id
            )
        END AS my_role
    FROM story AS s
    JOIN tasks AS t ON t.id = s.task_id
    JOIN events AS e ON e.id = t.event_id
)
SELECT a.task_id, a.my_role, c.id, c.position, c.rendered
FROM access AS a
LEFT JOIN LATERAL (
    SELECT x.id, x.position, row_to_json(item)::text AS rendered
    FROM comments AS x
    CROSS JOIN LATERAL (
        SELECT x.id, x.story_id, x.parent_id, x.author_id,
            CASE WHEN x.deleted_at IS NULL THEN x.body END AS body,
            x.edited_at IS NOT NULL AS edited,
            x.deleted_at IS NOT NULL AS deleted,
            CASE WHEN date_trunc('second', x.created_at) = x.created_at
                THEN to_char(x.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
                ELSE to_char(x.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
            END AS created_at,
            CASE WHEN date_trunc('second', x.updated_at) = x.updated_at
                THEN to_char(x.updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
                ELSE to_char(x.updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
            END AS updated_at
    ) AS item
    WHERE a.my_role IS NOT NULL AND x.story_id = a.id AND x.position > :after_position
    ORDER BY x.position
    LIMIT :max_rows
) AS c ON true
ORDER BY c.position;

-- name: list_comment_versions :many
-- One page of a comment's history (GET /comments/{id}/history), oldest first, after version
-- :after_version (0 for the first page). The bodies are NULL once the comment is deleted (its
-- text is never served again), decided in this statement so that one snapshot says both.
-- The comment by comments_pkey, the versions by one range scan on comment_versions_pkey.
SELECT v.version, v.action, CASE WHEN c.deleted_at IS NULL THEN v.body END AS body,
    v.actor_id, v.created_at
FROM comments AS c
JOIN comment_versions AS v ON v.comment_id = c.id
WHERE c.id = :comment_id AND v.version > :after_version
ORDER BY v.version
LIMIT :max_rows;
