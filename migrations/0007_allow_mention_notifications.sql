-- 0007: notifications of type 'mention' (API.md, "Who is notified": a story's content or a
-- comment's body gains a mention <@USER_ID>). notifications_type_check is replaced by one
-- that also allows 'mention'; every existing row satisfies it, since the old list is a subset.
-- Locking: ACCESS EXCLUSIVE on notifications for the length of this transaction, which scans
-- the table once to validate the new check (retention keeps it to NOTIFICATION_RETENTION_DAYS).

ALTER TABLE notifications DROP CONSTRAINT notifications_type_check;
ALTER TABLE notifications ADD CONSTRAINT notifications_type_check CHECK (
    type IN ('invite', 'system', 'story_update', 'comment', 'task_update', 'message', 'mention')
);
