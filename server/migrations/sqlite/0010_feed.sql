-- The news feed: accounts' counters, follows, posts, likes, the per-user inbox that
-- fanout fills, the durable fanout queue and the ranked snapshots cursors page through.
-- Post ids are snowflakes kept as BIGINT (not TEXT) so that they order numerically.

CREATE TABLE feed_accounts (
    user_id      TEXT PRIMARY KEY REFERENCES users(id),
    followers    BIGINT NOT NULL DEFAULT 0,
    following    BIGINT NOT NULL DEFAULT 0,
    posts        BIGINT NOT NULL DEFAULT 0,
    -- The last feed read; NULL (never) or older than the inactivity limit: inactive,
    -- skipped by fanout and rebuilt on return.
    last_read_ms BIGINT
);

CREATE TABLE feed_follows (
    follower_id   TEXT NOT NULL,
    followee_id   TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    PRIMARY KEY (follower_id, followee_id)
);
CREATE INDEX feed_follows_followee ON feed_follows (followee_id, follower_id);

CREATE TABLE feed_posts (
    id            BIGINT PRIMARY KEY,
    author_id     TEXT NOT NULL,
    text          TEXT NOT NULL,
    reply_to      BIGINT,
    created_at_ms BIGINT NOT NULL,
    likes         BIGINT NOT NULL DEFAULT 0,
    replies       BIGINT NOT NULL DEFAULT 0,
    -- 1: the author was above the follower threshold: read by pull, never fanned out.
    pulled        BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX feed_posts_author ON feed_posts (author_id, id);
CREATE INDEX feed_posts_pulled ON feed_posts (author_id, id) WHERE pulled = 1;
CREATE INDEX feed_posts_likes ON feed_posts (likes, id);

CREATE TABLE feed_likes (
    user_id       TEXT NOT NULL,
    post_id       BIGINT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    PRIMARY KEY (user_id, post_id)
);

-- Interactions (likes, replies) of a reader with an author: author affinity.
CREATE TABLE feed_affinity (
    user_id      TEXT NOT NULL,
    author_id    TEXT NOT NULL,
    interactions BIGINT NOT NULL,
    PRIMARY KEY (user_id, author_id)
);

-- Pushed post ids per reader; (user_id, post_id) unique, so a replayed chunk is a no-op.
CREATE TABLE feed_inbox (
    user_id   TEXT NOT NULL,
    post_id   BIGINT NOT NULL,
    author_id TEXT NOT NULL,
    PRIMARY KEY (user_id, post_id)
);

-- One fanout job per pushed post, enqueued in the post's transaction. `next_follower`
-- is the last follower id done (followers are visited in id order); each chunk moves it
-- in the transaction that writes the chunk's inbox rows.
CREATE TABLE feed_fanout (
    post_id       BIGINT PRIMARY KEY,
    author_id     TEXT NOT NULL,
    next_follower TEXT NOT NULL DEFAULT '',
    delivered     BIGINT NOT NULL DEFAULT 0,
    done          BIGINT NOT NULL DEFAULT 0,
    created_at_ms BIGINT NOT NULL,
    done_at_ms    BIGINT
);
CREATE INDEX feed_fanout_pending ON feed_fanout (done, post_id);

-- A ranked feed as first read: cursors page through it, so pages never repeat or skip.
CREATE TABLE feed_snapshots (
    id            TEXT PRIMARY KEY,
    user_id       TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    items         TEXT NOT NULL
);
CREATE INDEX feed_snapshots_created ON feed_snapshots (created_at_ms);
