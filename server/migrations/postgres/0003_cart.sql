-- The shopping cart (server/src/cart). A cart row holds its live ops as JSON (superseded
-- ops are compacted away); cart_history keeps every op and merge, append-only, and is
-- also what makes an op id apply once; cart_tombstones remembers which op ids were
-- observed by ops since compacted away (scope: the product, or '' for a clear).

CREATE TABLE products (
    id               TEXT PRIMARY KEY,
    name             TEXT NOT NULL,
    description      TEXT NOT NULL,
    category         TEXT NOT NULL,
    unit_price_cents BIGINT NOT NULL,
    stock            BIGINT NOT NULL,
    position         BIGINT NOT NULL
);

CREATE TABLE carts (
    id            TEXT PRIMARY KEY,
    owner_kind    TEXT NOT NULL,
    owner_id      TEXT NOT NULL,
    version       BIGINT NOT NULL,
    ops           TEXT NOT NULL,
    merged_into   TEXT,
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL
);
CREATE INDEX carts_guest_idle ON carts (updated_at_ms) WHERE owner_kind = 'guest';

CREATE TABLE cart_history (
    cart_id    TEXT NOT NULL,
    op_id      TEXT NOT NULL,
    version    BIGINT NOT NULL,
    position   BIGINT NOT NULL,
    kind       TEXT NOT NULL,
    entry      TEXT NOT NULL,
    dead       BIGINT NOT NULL,
    session_id TEXT,
    at_ms      BIGINT NOT NULL,
    PRIMARY KEY (cart_id, op_id)
);
CREATE INDEX cart_history_order ON cart_history (cart_id, version, position);

CREATE TABLE cart_tombstones (
    cart_id TEXT NOT NULL,
    op_id   TEXT NOT NULL,
    scope   TEXT NOT NULL,
    PRIMARY KEY (cart_id, op_id, scope)
);

CREATE TABLE cart_merges (
    guest_cart_id TEXT PRIMARY KEY,
    into_cart_id  TEXT NOT NULL,
    summary       TEXT NOT NULL,
    at_ms         BIGINT NOT NULL
);
