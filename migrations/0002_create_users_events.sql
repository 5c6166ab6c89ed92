-- 0002: users, their API tokens, and events.
-- Tokens are stored only as SHA-256 digests; revoking one deletes its row. Emails are unique
-- case-insensitively (users_email_key on lower(email)) and stored as given.
-- Locking: creates new tables only.

CREATE TABLE users (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name text NOT NULL,
    email text NOT NULL,
    password_hash text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT users_name_check CHECK (char_length(name) BETWEEN 1 AND 200),
    CONSTRAINT users_email_check CHECK (char_length(email) BETWEEN 3 AND 320)
);

CREATE UNIQUE INDEX users_email_key ON users (lower(email));

CREATE TABLE auth_tokens (
    token_hash bytea PRIMARY KEY,
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT auth_tokens_token_hash_check CHECK (octet_length(token_hash) = 32)
);

CREATE INDEX auth_tokens_user_id_idx ON auth_tokens (user_id);

CREATE TABLE events (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    title text NOT NULL,
    description text NOT NULL DEFAULT '',
    start_date timestamptz NOT NULL,
    end_date timestamptz NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT events_title_check CHECK (char_length(title) BETWEEN 1 AND 200),
    CONSTRAINT events_description_check CHECK (char_length(description) <= 10000),
    CONSTRAINT events_dates_check CHECK (end_date >= start_date)
);

-- GET /users/{id}/events: one owner's events in (start_date, id) order.
CREATE INDEX events_user_id_start_date_idx ON events (user_id, start_date, id);
