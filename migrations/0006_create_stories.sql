-- 0006: stories of a task (Markdown, at most 512 KiB of UTF-8) and every revision of each.
-- stories holds the current title and content, so reading a story never rebuilds anything;
-- its revision number grows by one on every change of title or content. story_revisions
-- holds the history: every revision's title and author, and its content either in full (a
-- snapshot) or as line changes against the revision before it (a delta: a JSON list of
-- [first line, end line, replacement text] over the previous revision's lines, as
-- server/stories/lines.py computes them). A snapshot is taken at revision 1, then whenever
-- 100 revisions have passed since the last one or the deltas since it add up to more bytes
-- than the content itself; so any revision is rebuilt from one snapshot and at most 99 deltas
-- whose total size is below the content's (one primary-key range scan, a few milliseconds).
--
-- What one revision costs: a one-line edit adds one story_revisions row (~24 B header, 48 B of
-- ids, revision numbers and timestamp, the title, and the changed line as JSON: about 150 B
-- plus that line) and one entry in each of its two indexes (~36 B and ~28 B), ~300 B in all;
-- the stories row is rewritten in place of the old one (that version, with its TOASTed
-- content, is dead and reclaimed by VACUUM, as for any UPDATE of a long text). A snapshot
-- costs the content, compressed by TOAST; it comes at most once per 100 revisions or once the
-- deltas since the last one outweigh it, so amortized it adds at most content/100 (1 KiB for
-- 100 KiB) or as much as the deltas themselves. tests/test_stories.py measures it.
--
-- Deleting a story deletes its revisions (and, later, its comments: comments reference
-- stories (id) ON DELETE CASCADE); deleting its task (or the task's event) deletes it;
-- deleting a user keeps the stories and revisions it wrote, with author_id set to NULL.
-- Locking: creates new tables only.

CREATE TABLE stories (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    task_id uuid NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    title text NOT NULL,
    content text NOT NULL DEFAULT '',
    revision integer NOT NULL DEFAULT 1,
    author_id uuid REFERENCES users (id) ON DELETE SET NULL,
    -- The revision the current one is rebuilt from, and the bytes of the deltas since it:
    -- what decides whether the next revision is stored as a snapshot.
    snapshot_revision integer NOT NULL DEFAULT 1,
    chain_bytes integer NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT stories_title_check CHECK (char_length(title) BETWEEN 1 AND 200),
    CONSTRAINT stories_content_check CHECK (octet_length(content) <= 524288),
    CONSTRAINT stories_revision_check CHECK (revision >= 1),
    CONSTRAINT stories_snapshot_revision_check CHECK (snapshot_revision BETWEEN 1 AND revision),
    CONSTRAINT stories_chain_bytes_check CHECK (chain_bytes >= 0)
);

-- GET /tasks/{id}/stories (keyset on id within a task) and the cascade from a deleted task.
CREATE INDEX stories_task_id_idx ON stories (task_id, id);
-- DELETE /users sets author_id to NULL on the stories the user wrote.
CREATE INDEX stories_author_id_idx ON stories (author_id);

CREATE TABLE story_revisions (
    story_id uuid NOT NULL REFERENCES stories (id) ON DELETE CASCADE,
    revision integer NOT NULL,
    title text NOT NULL,
    author_id uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    -- The snapshot this revision is rebuilt from: itself when it is one.
    snapshot_revision integer NOT NULL,
    content text,
    delta jsonb,
    CONSTRAINT story_revisions_pkey PRIMARY KEY (story_id, revision),
    CONSTRAINT story_revisions_revision_check CHECK (revision >= 1),
    CONSTRAINT story_revisions_snapshot_check CHECK (
        snapshot_revision BETWEEN 1 AND revision
        AND (content IS NOT NULL) = (snapshot_revision = revision)
        AND (content IS NULL) = (delta IS NOT NULL)
    )
);

-- DELETE /users sets author_id to NULL on the revisions the user made.
CREATE INDEX story_revisions_author_id_idx ON story_revisions (author_id);
