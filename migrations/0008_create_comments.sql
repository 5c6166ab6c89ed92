-- 0008: comments on stories, threaded by parent_id within one story, and every version of each.
-- comments holds a comment as it is now. Its place in the story's thread is `position`: 1, 2,
-- 3... per story, taken from comment_counters, whose row for the story the creating
-- transaction holds until it commits; so positions commit in order and a reader paging by
-- position (GET /stories/{id}/comments) never skips a comment committed behind its cursor
-- (created_at could: a transaction that started first may commit last).
-- A parent is a comment of the same story: the composite foreign key comments_parent_fkey
-- onto comments_story_id_id_key, as tasks do for their event. Deletion is soft: deleted_at
-- is set and the row keeps its place and its replies; the API shows it as a placeholder
-- (body null) and never serves its text again, in the thread or in its history.
-- comment_versions holds the history: version 1 is the creation with its body, each edit a
-- version with the body it made (so the body before every edit is the version before it),
-- a deletion a version with no body. Every change of a comment writes its version in the
-- same statement, under the comment's row lock: racing edits each keep their entry.
-- Deleting a story deletes its comments, their versions and its counter (ON DELETE CASCADE);
-- deleting a user keeps what it wrote, with author_id / actor_id set to NULL.
-- Locking: creates new tables only.

CREATE TABLE comments (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    story_id uuid NOT NULL REFERENCES stories (id) ON DELETE CASCADE,
    parent_id uuid,
    position bigint NOT NULL,
    author_id uuid REFERENCES users (id) ON DELETE SET NULL,
    body text NOT NULL,
    version integer NOT NULL DEFAULT 1,
    edited_at timestamptz,
    deleted_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT comments_story_id_id_key UNIQUE (story_id, id),
    CONSTRAINT comments_parent_fkey FOREIGN KEY (story_id, parent_id)
        REFERENCES comments (story_id, id) ON DELETE CASCADE,
    CONSTRAINT comments_parent_id_check CHECK (parent_id <> id),
    CONSTRAINT comments_body_check CHECK (char_length(body) BETWEEN 1 AND 10000),
    CONSTRAINT comments_position_check CHECK (position >= 1),
    CONSTRAINT comments_version_check CHECK (version >= 1)
);

-- GET /stories/{id}/comments: one range scan per page, oldest first (keyset on position);
-- and the cascade from a deleted story.
CREATE UNIQUE INDEX comments_story_id_position_key ON comments (story_id, position);
-- The replies of a comment: what comments_parent_fkey looks up for each comment deleted with
-- its story (without it, each would scan the whole story's comments).
CREATE INDEX comments_parent_id_idx ON comments (story_id, parent_id) WHERE parent_id IS NOT NULL;
-- DELETE /users sets author_id to NULL on the comments the user wrote.
CREATE INDEX comments_author_id_idx ON comments (author_id);

CREATE TABLE comment_counters (
    story_id uuid PRIMARY KEY REFERENCES stories (id) ON DELETE CASCADE,
    last_position bigint NOT NULL,
    CONSTRAINT comment_counters_last_position_check CHECK (last_position >= 1)
);

CREATE TABLE comment_versions (
    comment_id uuid NOT NULL REFERENCES comments (id) ON DELETE CASCADE,
    version integer NOT NULL,
    action text NOT NULL,
    body text,
    actor_id uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT comment_versions_pkey PRIMARY KEY (comment_id, version),
    CONSTRAINT comment_versions_version_check CHECK (version >= 1),
    CONSTRAINT comment_versions_action_check CHECK (
        (action = 'created' AND version = 1 AND body IS NOT NULL)
        OR (action = 'edited' AND version > 1 AND body IS NOT NULL)
        OR (action = 'deleted' AND version > 1 AND body IS NULL)
    )
);

-- DELETE /users sets actor_id to NULL on the versions the user made.
CREATE INDEX comment_versions_actor_id_idx ON comment_versions (actor_id);
