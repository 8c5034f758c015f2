-- Roles on accounts (admin, editor, viewer) and the log of every role change.

ALTER TABLE users ADD COLUMN role TEXT NOT NULL DEFAULT 'viewer';

-- An installation that had accounts before roles existed: its oldest account administers
-- it, as the first account of a fresh installation does.
UPDATE users SET role = 'admin'
WHERE id = (SELECT id FROM users ORDER BY created_at_ms, id LIMIT 1);

CREATE TABLE role_changes (
    id         TEXT PRIMARY KEY,
    at_ms      BIGINT NOT NULL,
    user_id    TEXT NOT NULL REFERENCES users(id),
    actor_id   TEXT,
    actor_name TEXT NOT NULL,
    role_before TEXT,
    role_after  TEXT NOT NULL
);
CREATE INDEX role_changes_at ON role_changes (at_ms);
