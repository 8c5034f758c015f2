-- Delivery keys of the flag environments (server/src/flags/keys.rs): SDKs authenticate
-- with `Authorization: Bearer KEY`. Only the key's SHA-256 (hex) is kept; `prefix` (its
-- first characters) tells keys apart in lists. A server key reads an environment's whole
-- configuration stream, a client key only evaluated answers. A revoked key stays listed
-- with `revoked_at_ms` and is refused from the moment of its revocation.

CREATE TABLE flag_keys (
    id            TEXT PRIMARY KEY,
    environment   TEXT NOT NULL REFERENCES flag_environments(name),
    kind          TEXT NOT NULL,
    key_hash      TEXT NOT NULL UNIQUE,
    prefix        TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    created_by    TEXT NOT NULL,
    revoked_at_ms BIGINT
);
CREATE INDEX flag_keys_environment ON flag_keys (environment, created_at_ms);
