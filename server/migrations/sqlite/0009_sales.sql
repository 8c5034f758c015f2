-- The flash sale (issue 14). The `sales` row is the ledger of record: a CHECK keeps
-- sold + reserved <= stock whatever writes it, and every change of it happens in a
-- transaction with the reservation or order rows that explain it.

CREATE TABLE sales (
    id                 TEXT PRIMARY KEY,
    name               TEXT NOT NULL,
    product_id         TEXT NOT NULL,
    stock              BIGINT NOT NULL,
    sold               BIGINT NOT NULL DEFAULT 0,
    reserved           BIGINT NOT NULL DEFAULT 0,
    starts_at_ms       BIGINT NOT NULL,
    per_user_limit     BIGINT NOT NULL,
    reservation_ttl_ms BIGINT NOT NULL,
    created_by         TEXT NOT NULL,
    created_at_ms      BIGINT NOT NULL,
    CHECK (stock > 0 AND sold >= 0 AND reserved >= 0 AND sold + reserved <= stock)
);

-- One row per unit held or bought: state `reserved` (until expires_at_ms), `paid` or
-- `expired`. A buyer is `user:<account id>` or `guest:<session id>`; an idempotency key
-- answers its original reservation.
CREATE TABLE sale_reservations (
    id              TEXT PRIMARY KEY,
    sale_id         TEXT NOT NULL REFERENCES sales (id),
    buyer           TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    state           TEXT NOT NULL,
    created_at_ms   BIGINT NOT NULL,
    expires_at_ms   BIGINT NOT NULL,
    order_id        TEXT,
    UNIQUE (sale_id, buyer, idempotency_key)
);
CREATE INDEX sale_reservations_by_buyer ON sale_reservations (sale_id, buyer);
CREATE INDEX sale_reservations_due ON sale_reservations (sale_id, state, expires_at_ms);

CREATE TABLE sale_orders (
    id              TEXT PRIMARY KEY,
    sale_id         TEXT NOT NULL REFERENCES sales (id),
    reservation_id  TEXT NOT NULL UNIQUE REFERENCES sale_reservations (id),
    buyer           TEXT NOT NULL,
    product_id      TEXT NOT NULL,
    created_at_ms   BIGINT NOT NULL,
    fulfilled_at_ms BIGINT
);
CREATE INDEX sale_orders_by_buyer ON sale_orders (buyer, created_at_ms);
CREATE INDEX sale_orders_by_sale ON sale_orders (sale_id, created_at_ms);

-- The transactional outbox: a row per confirmed order, written with it; the fulfilment
-- worker marks it done in the transaction that records the fulfilment.
CREATE TABLE sale_outbox (
    order_id      TEXT PRIMARY KEY REFERENCES sale_orders (id),
    created_at_ms BIGINT NOT NULL,
    attempts      BIGINT NOT NULL DEFAULT 0,
    done_at_ms    BIGINT
);
CREATE INDEX sale_outbox_pending ON sale_outbox (created_at_ms) WHERE done_at_ms IS NULL;

-- The effect of fulfilment: at most one per order, by its primary key.
CREATE TABLE sale_fulfilments (
    order_id        TEXT PRIMARY KEY REFERENCES sale_orders (id),
    fulfilled_at_ms BIGINT NOT NULL,
    instance_id     TEXT NOT NULL
);
