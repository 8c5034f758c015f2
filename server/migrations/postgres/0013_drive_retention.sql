-- Drive retention and chunk garbage collection (server/src/drive/retention).
--
-- A chunk no version or upload references is first marked dying (dying_ms): uploads
-- count a dying chunk as missing, so nobody is newly told it is present, and storing it
-- again clears the mark. A chunk dying for the grace period and still unreferenced has
-- its row deleted and its hash queued in drive_chunk_deletions in one transaction; its
-- bytes are deleted after that commit, then the queue row. A crash in between leaves a
-- queued hash whose bytes the next pass deletes: never a drive_chunks row without bytes.
ALTER TABLE drive_chunks ADD COLUMN dying_ms BIGINT;
CREATE INDEX drive_chunks_dying ON drive_chunks (dying_ms) WHERE dying_ms IS NOT NULL;

CREATE TABLE drive_chunk_deletions (
    hash     TEXT PRIMARY KEY,
    since_ms BIGINT NOT NULL
);

-- Where the retention pass resumes across passes (one row): the file whose versions it
-- looks at next, and the chunk the scan for unreferenced chunks reads after.
CREATE TABLE drive_gc (
    id             BIGINT PRIMARY KEY,
    versions_after TEXT NOT NULL,
    chunks_after   TEXT NOT NULL
);
INSERT INTO drive_gc (id, versions_after, chunks_after) VALUES (1, '', '');

-- The newest change whose tombstones were purged: a change feed cursor older than it
-- missed deletions it can no longer read, and must list the drive again.
ALTER TABLE drive_heads ADD COLUMN purged_seq BIGINT NOT NULL DEFAULT 0;

CREATE INDEX drive_nodes_trash ON drive_nodes (updated_ms) WHERE deleted = 1;
CREATE INDEX drive_uploads_created ON drive_uploads (created_ms);
