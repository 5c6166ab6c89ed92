-- name: insert_user :one
-- Registers a user (POST /users); no row when the email is taken, in any case: users_email_key
-- (lower(email)) decides, so of registrations racing with one email exactly one gets a row
-- (the others wait for it to commit, then insert nothing).
INSERT INTO users (name, email, password_hash)
VALUES (:name, :email, :password_hash)
ON CONFLICT ((lower(email))) DO NOTHING
RETURNING id, name, email, created_at, updated_at;

-- name: get_user_by_id :one
-- One user by id (GET /users/{id}, and every access check). Primary key users_pkey.
SELECT id, name, email, created_at, updated_at
FROM users
WHERE id = :user_id;

-- name: get_login_by_email :one
-- The password hash of the user with this email, any case (POST /auth/token).
-- Served by users_email_key (lower(email)).
SELECT id, name, email, password_hash, created_at, updated_at
FROM users
WHERE lower(email) = lower(:email);

-- name: email_taken_by_other :value
-- Whether another user has this email, in any case (PUT /users/{id} with an email, before the
-- update; a change racing it still meets users_email_key). Served by users_email_key.
SELECT EXISTS (
    SELECT 1
    FROM users
    WHERE lower(email) = lower(:email) AND id <> :user_id
) AS taken;

-- name: update_user :one
-- Partial update (PUT /users/{id}): a NULL argument keeps the column as it is; set_password
-- tells a new hash from "keep". users_pkey; an email taken by another user fails on
-- users_email_key.
UPDATE users
SET name = coalesce(:name, name),
    email = coalesce(:email, email),
    password_hash = CASE WHEN :set_password THEN :password_hash ELSE password_hash END,
    updated_at = now()
WHERE id = :user_id
RETURNING id, name, email, created_at, updated_at;

-- name: delete_user :exec
-- Deletes a user; tokens and owned events go with it (ON DELETE CASCADE). users_pkey.
DELETE FROM users
WHERE id = :user_id;

-- name: insert_token :exec
-- Stores a new API token's SHA-256 digest for a user (registration). auth_tokens_pkey.
INSERT INTO auth_tokens (token_hash, user_id)
VALUES (:token_hash, :user_id);

-- name: insert_login_token :one
-- A login's new token, stored only if the user still exists with the password hash that the
-- login verified; returns no row otherwise (a password change or DELETE /users won the race).
-- FOR SHARE makes a concurrent change of the user row wait for this insert to commit (so its
-- "revoke other tokens" sees the token), or makes this wait for the change and re-check the
-- hash on the new row. users_pkey, then an insert into auth_tokens_pkey.
INSERT INTO auth_tokens (token_hash, user_id)
SELECT :token_hash, u.id
FROM users AS u
WHERE u.id = :user_id AND u.password_hash = :password_hash
FOR SHARE OF u
RETURNING user_id;

-- name: get_user_by_token :one
-- Authentication on every request: the id of the user a token digest belongs to. One probe
-- of auth_tokens_pkey: a token row implies its user (the foreign key deletes a user's tokens
-- with the user), so no join, and only the id, which is all a request needs of its caller.
SELECT t.user_id AS id
FROM auth_tokens AS t
WHERE t.token_hash = :token_hash;

-- name: delete_token :exec
-- Revokes one token (DELETE /auth/token). auth_tokens_pkey.
DELETE FROM auth_tokens
WHERE token_hash = :token_hash;

-- name: delete_other_tokens :many
-- Revokes every token of a user but the one in use (a new password). auth_tokens_user_id_idx.
DELETE FROM auth_tokens
WHERE user_id = :user_id AND token_hash <> :keep_token_hash
RETURNING token_hash;

-- name: list_token_hashes :many
-- Every token digest of a user, to close their open streams when the user is deleted.
-- auth_tokens_user_id_idx.
SELECT token_hash
FROM auth_tokens
WHERE user_id = :user_id;

-- name: find_valid_token_hashes :value
-- The stream watch, every heartbeat interval: which of the tokens behind this process's open
-- streams still exist (a revoked token or a deleted user's is gone), whatever Redis delivered
-- of the revocation news. One statement for every stream of the process; auth_tokens_pkey
-- probes.
SELECT array_agg(token_hash) AS found
FROM auth_tokens
WHERE token_hash = any(:token_hashes::bytea[]);

-- name: lock_existing_users :many
-- Which of these ids are users, each row key-share locked until the transaction ends, so none
-- of them can be deleted before it commits (POST /sse/send-message refuses unknown targets,
-- then notifies them). users_pkey probes, locked in id order.
SELECT id
FROM users
WHERE id = any(:user_ids::uuid[])
ORDER BY id
FOR KEY SHARE;
