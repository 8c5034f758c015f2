-- Collaborative documents (server/src/docs). A document's content is its snapshot (a
-- Yjs v1 update holding the state through `seq`) plus the updates stored after it,
-- numbered densely per document by docs.head_seq. Versions keep whole states.

CREATE TABLE docs (
    id         TEXT PRIMARY KEY,
    title      TEXT NOT NULL,
    owner_id   TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    head_seq   BIGINT NOT NULL,
    created_ms BIGINT NOT NULL,
    updated_ms BIGINT NOT NULL
);
CREATE INDEX docs_owner ON docs (owner_id);

CREATE TABLE doc_members (
    doc_id   TEXT NOT NULL REFERENCES docs (id) ON DELETE CASCADE,
    user_id  TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role     TEXT NOT NULL,
    added_ms BIGINT NOT NULL,
    PRIMARY KEY (doc_id, user_id)
);
CREATE INDEX doc_members_user ON doc_members (user_id);

CREATE TABLE doc_updates (
    doc_id     TEXT NOT NULL REFERENCES docs (id) ON DELETE CASCADE,
    seq        BIGINT NOT NULL,
    data       BYTEA NOT NULL,
    created_ms BIGINT NOT NULL,
    PRIMARY KEY (doc_id, seq)
);

CREATE TABLE doc_snapshots (
    doc_id     TEXT PRIMARY KEY REFERENCES docs (id) ON DELETE CASCADE,
    seq        BIGINT NOT NULL,
    data       BYTEA NOT NULL,
    created_ms BIGINT NOT NULL
);

CREATE TABLE doc_versions (
    id         TEXT PRIMARY KEY,
    doc_id     TEXT NOT NULL REFERENCES docs (id) ON DELETE CASCADE,
    kind       TEXT NOT NULL,
    name       TEXT,
    created_ms BIGINT NOT NULL,
    created_by TEXT,
    seq        BIGINT NOT NULL,
    preview    TEXT NOT NULL,
    data       BYTEA NOT NULL
);
CREATE INDEX doc_versions_doc ON doc_versions (doc_id, created_ms);
