-- Every change that can end or alter a live session, in commit order, so that an
-- instance can keep the sessions it has read and still see each change before the next
-- request: a revoked or replaced session, an account whose role changed, the idle guest
-- sessions deleted. `session_epoch` numbers them: a change takes its row's lock to take
-- the next number, so the numbers commit in order and a reader that sees change N sees
-- every change before it.
CREATE TABLE session_epoch (
    id    INTEGER PRIMARY KEY,
    epoch BIGINT NOT NULL
);
INSERT INTO session_epoch (id, epoch) VALUES (1, 0);

CREATE TABLE session_changes (
    epoch          BIGINT PRIMARY KEY,
    session_id     TEXT,
    user_id        TEXT,
    idle_before_ms BIGINT,
    at_ms          BIGINT NOT NULL
);
CREATE INDEX session_changes_at ON session_changes (at_ms);
