-- Feature flags (server/src/flags). One global version numbers every change to flags and
-- segments: it is the SSE event id, the OFREP ETag's base and the audit log's order.

CREATE TABLE flag_state (
    id      BIGINT PRIMARY KEY,
    version BIGINT NOT NULL
);
INSERT INTO flag_state (id, version) VALUES (1, 0);

CREATE TABLE flags (
    key           TEXT PRIMARY KEY,
    definition    TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL
);

CREATE TABLE flag_segments (
    key           TEXT PRIMARY KEY,
    definition    TEXT NOT NULL,
    updated_at_ms BIGINT NOT NULL
);

CREATE TABLE flag_environments (
    name             TEXT PRIMARY KEY,
    require_approval BIGINT NOT NULL
);
INSERT INTO flag_environments (name, require_approval) VALUES ('development', 0);
INSERT INTO flag_environments (name, require_approval) VALUES ('production', 0);

CREATE TABLE flag_audit (
    version     BIGINT PRIMARY KEY,
    at_ms       BIGINT NOT NULL,
    actor_id    TEXT,
    actor_name  TEXT NOT NULL,
    action      TEXT NOT NULL,
    flag_key    TEXT,
    environment TEXT,
    before      TEXT,
    after       TEXT,
    approved_by TEXT
);
CREATE INDEX flag_audit_flag ON flag_audit (flag_key, version);

CREATE TABLE flag_approvals (
    id              TEXT PRIMARY KEY,
    flag_key        TEXT NOT NULL,
    environment     TEXT NOT NULL,
    proposed        TEXT NOT NULL,
    base_updated_ms BIGINT NOT NULL,
    requested_by    TEXT NOT NULL,
    requested_name  TEXT NOT NULL,
    requested_at_ms BIGINT NOT NULL,
    status          TEXT NOT NULL,
    decided_by      TEXT,
    decided_at_ms   BIGINT
);
CREATE INDEX flag_approvals_status ON flag_approvals (status, requested_at_ms);

CREATE TABLE flag_schedules (
    id              TEXT PRIMARY KEY,
    flag_key        TEXT NOT NULL,
    environment     TEXT NOT NULL,
    proposed        TEXT NOT NULL,
    run_at_ms       BIGINT NOT NULL,
    requested_by    TEXT NOT NULL,
    requested_name  TEXT NOT NULL,
    status          TEXT NOT NULL
);
CREATE INDEX flag_schedules_due ON flag_schedules (status, run_at_ms);
