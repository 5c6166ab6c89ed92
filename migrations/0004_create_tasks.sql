-- 0004: tasks of an event, a tree (a parent in the same event), and the roles users hold on them.
-- A role is stored only where it is granted (task_members). That it holds on the whole subtree,
-- and that the event owner is maintainer of every task, are derived when read (the recursive
-- statements of queries/tasks.sql), never copied down the tree: a move or a removal changes
-- who sees what at once. The same-event rule is the composite foreign key tasks_parent_fkey
-- onto tasks_event_id_id_key; the duration rule between a parent and its direct subtasks is
-- enforced by the service under a lock on the parent row (a CHECK cannot see other rows).
-- notifications_type_check already allows task_update and system: unchanged.
-- Locking: creates new tables only.

CREATE TABLE tasks (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    event_id uuid NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    parent_id uuid,
    title text NOT NULL,
    description text NOT NULL DEFAULT '',
    duration_minutes integer NOT NULL,
    completed boolean NOT NULL DEFAULT false,
    completed_at timestamptz,
    created_by uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT tasks_event_id_id_key UNIQUE (event_id, id),
    CONSTRAINT tasks_parent_fkey FOREIGN KEY (event_id, parent_id)
        REFERENCES tasks (event_id, id) ON DELETE CASCADE,
    CONSTRAINT tasks_parent_id_check CHECK (parent_id <> id),
    CONSTRAINT tasks_title_check CHECK (char_length(title) BETWEEN 1 AND 200),
    CONSTRAINT tasks_description_check CHECK (char_length(description) <= 10000),
    CONSTRAINT tasks_duration_minutes_check CHECK (duration_minutes BETWEEN 1 AND 525600),
    CONSTRAINT tasks_completed_check CHECK (completed = (completed_at IS NOT NULL))
);

-- Walking down the tree (subtrees, the visible tasks of a collaborator), the rollup of the
-- direct subtasks' durations (index-only with the INCLUDE), and the cascade from a deleted parent.
CREATE INDEX tasks_parent_id_idx ON tasks (parent_id) INCLUDE (duration_minutes);

CREATE TABLE task_members (
    task_id uuid NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT task_members_pkey PRIMARY KEY (task_id, user_id),
    CONSTRAINT task_members_role_check CHECK (role IN ('maintainer', 'collaborator'))
);

-- A caller's own memberships: the roots of what a collaborator sees in an event, "is a member
-- of any of the event's tasks", and the cascade from DELETE /users.
CREATE INDEX task_members_user_id_idx ON task_members (user_id, task_id) INCLUDE (role);

-- DELETE /users sets created_by to NULL on the tasks the user created.
CREATE INDEX tasks_created_by_idx ON tasks (created_by);
