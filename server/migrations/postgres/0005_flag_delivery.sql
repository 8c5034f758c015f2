-- What each instance's stream subscribers have been sent (server/src/flags): instances
-- report here so that the kill switch can say when every connected client, on every
-- instance, has a change. Rows older than a few seconds belong to stopped instances.

CREATE TABLE flag_delivery (
    instance_id TEXT NOT NULL,
    environment TEXT NOT NULL,
    version     BIGINT NOT NULL,
    subscribers BIGINT NOT NULL,
    delivered   BIGINT NOT NULL,
    at_ms       BIGINT NOT NULL,
    PRIMARY KEY (instance_id, environment)
);
