-- File sync (server/src/drive). A drive is one account's tree of nodes keyed by id; a
-- file's content is a version, a manifest of SHA-256-addressed chunks stored once in
-- the chunk store (drive_chunks lists what it holds). Every change to a drive takes the
-- next drive_heads.seq (the row is the drive's lock) and stamps the nodes it changes.

CREATE TABLE drive_heads (
    owner_id TEXT PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    seq      BIGINT NOT NULL
);

CREATE TABLE drive_nodes (
    id             TEXT PRIMARY KEY,
    owner_id       TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- '' at the top of the drive (so that the unique index below covers it).
    parent_id      TEXT NOT NULL,
    name           TEXT NOT NULL,
    name_key       TEXT NOT NULL,
    kind           TEXT NOT NULL,
    deleted        BIGINT NOT NULL,
    version_id     TEXT,
    size           BIGINT NOT NULL,
    content_id     TEXT,
    seq            BIGINT NOT NULL,
    created_ms     BIGINT NOT NULL,
    updated_ms     BIGINT NOT NULL
);
CREATE UNIQUE INDEX drive_nodes_live_name ON drive_nodes (owner_id, parent_id, name_key)
    WHERE deleted = 0;
CREATE INDEX drive_nodes_changes ON drive_nodes (owner_id, seq);
CREATE INDEX drive_nodes_parent ON drive_nodes (parent_id);

CREATE TABLE drive_versions (
    id           TEXT PRIMARY KEY,
    node_id      TEXT NOT NULL REFERENCES drive_nodes (id) ON DELETE CASCADE,
    base_version TEXT,
    size         BIGINT NOT NULL,
    content_id   TEXT NOT NULL,
    device       TEXT NOT NULL,
    created_by   TEXT NOT NULL,
    created_ms   BIGINT NOT NULL
);
CREATE INDEX drive_versions_node ON drive_versions (node_id, created_ms);

CREATE TABLE drive_version_chunks (
    version_id TEXT NOT NULL REFERENCES drive_versions (id) ON DELETE CASCADE,
    idx        BIGINT NOT NULL,
    hash       TEXT NOT NULL,
    size       BIGINT NOT NULL,
    PRIMARY KEY (version_id, idx)
);
CREATE INDEX drive_version_chunks_hash ON drive_version_chunks (hash);

CREATE TABLE drive_chunks (
    hash       TEXT PRIMARY KEY,
    size       BIGINT NOT NULL,
    created_ms BIGINT NOT NULL
);

-- An upload: a manifest waiting for its chunks, then committed once (committed_version).
CREATE TABLE drive_uploads (
    id                TEXT PRIMARY KEY,
    user_id           TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    owner_id          TEXT NOT NULL,
    node_id           TEXT,
    base_version      TEXT,
    parent_id         TEXT NOT NULL,
    name              TEXT,
    device            TEXT NOT NULL,
    size              BIGINT NOT NULL,
    content_id        TEXT NOT NULL,
    committed_version TEXT,
    committed_node    TEXT,
    outcome           TEXT,
    created_ms        BIGINT NOT NULL
);

CREATE TABLE drive_upload_chunks (
    upload_id TEXT NOT NULL REFERENCES drive_uploads (id) ON DELETE CASCADE,
    idx       BIGINT NOT NULL,
    hash      TEXT NOT NULL,
    size      BIGINT NOT NULL,
    PRIMARY KEY (upload_id, idx)
);
CREATE INDEX drive_upload_chunks_hash ON drive_upload_chunks (hash);

CREATE TABLE drive_shares (
    folder_id  TEXT NOT NULL REFERENCES drive_nodes (id) ON DELETE CASCADE,
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    mode       TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    PRIMARY KEY (folder_id, user_id)
);
CREATE INDEX drive_shares_user ON drive_shares (user_id);
