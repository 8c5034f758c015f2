-- Accounts, sessions and the realtime topic log.

CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    username      TEXT NOT NULL,
    username_key  TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL
);

CREATE TABLE sessions (
    id               TEXT PRIMARY KEY,
    token_hash       TEXT NOT NULL UNIQUE,
    user_id          TEXT REFERENCES users(id),
    guest_session_id TEXT,
    user_agent       TEXT,
    created_at_ms    BIGINT NOT NULL,
    last_seen_ms     BIGINT NOT NULL,
    revoked_at_ms    BIGINT
);
CREATE INDEX sessions_user ON sessions (user_id);
CREATE INDEX sessions_guest_idle ON sessions (last_seen_ms) WHERE user_id IS NULL;

CREATE TABLE realtime_topics (
    topic TEXT PRIMARY KEY,
    head  BIGINT NOT NULL
);

CREATE TABLE realtime_events (
    topic         TEXT NOT NULL,
    seq           BIGINT NOT NULL,
    op_id         TEXT NOT NULL,
    payload       TEXT NOT NULL,
    session_id    TEXT,
    created_at_ms BIGINT NOT NULL,
    PRIMARY KEY (topic, seq),
    UNIQUE (topic, op_id)
);
