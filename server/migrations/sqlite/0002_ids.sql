-- The ID generator's node id leases (server/src/ids/lease.rs). One row per node id ever
-- leased (at most 4096). `fencing_token` increments on every grant; a renewal must present
-- the current one. No ID of a node id has a time above `high_water_ms` (Unix ms), and
-- the next holder issues only above it.

CREATE TABLE id_leases (
    node_id       INTEGER PRIMARY KEY,
    holder        TEXT NOT NULL,
    fencing_token BIGINT NOT NULL,
    granted_at_ms BIGINT NOT NULL,
    renewed_at_ms BIGINT NOT NULL,
    expires_at_ms BIGINT NOT NULL,
    high_water_ms BIGINT NOT NULL
);
