-- The rows of a batch, bound as one JSON array (db::json_rows). The planner guesses
-- 100 rows for jsonb_array_elements, and with that guess it joined a batch of 50 keys to
-- a 20,000-row table by hashing and scanning all of it (2.4 ms a batch, growing with the
-- table) instead of one index probe per key (0.1 ms). A batch
-- is small beside the tables it is joined to: say so. STRICT keeps the function from
-- being inlined, which would drop the estimate.
CREATE FUNCTION batch_rows(rows jsonb) RETURNS SETOF jsonb
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE ROWS 10
    AS 'SELECT jsonb_array_elements(rows)';
