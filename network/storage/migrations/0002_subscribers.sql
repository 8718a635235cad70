-- libhub schema 2: subscribers (confirmed only), their pending subscribe requests, used
-- single-use link tokens, the digest queue of items and one row per digest or notice.

-- People who confirmed a subscription. Unconfirmed addresses never get a row here: they
-- live in subscribe_requests, so nothing but a confirmation can reach them.
CREATE TABLE subscribers (
    id              INTEGER PRIMARY KEY,
    address         TEXT NOT NULL,                    -- email address or apprise URL
    address_key     TEXT NOT NULL UNIQUE,             -- lower-cased, for lookups
    channel         TEXT NOT NULL,                    -- email|apprise
    topics          TEXT NOT NULL,                    -- JSON list: "kind:webinar", "feed:x"
    frequency       TEXT NOT NULL,                    -- immediate|daily|weekly
    tz              TEXT NOT NULL,
    hour            INTEGER NOT NULL,
    weekday         INTEGER NOT NULL DEFAULT 0,       -- Monday=0
    status          TEXT NOT NULL DEFAULT 'active',   -- active|suspended|unsubscribed
    source          TEXT NOT NULL DEFAULT '',         -- web|matrix:@user|import|cli
    consent         TEXT NOT NULL DEFAULT '',         -- how consent was given
    created_at      TEXT NOT NULL,
    confirmed_at    TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    unsubscribed_at TEXT,
    suspended_at    TEXT,
    queue_cursor    INTEGER NOT NULL DEFAULT 0,       -- digest_queue.seq already handed out
    last_period     TEXT,                             -- period key of the last digest claimed
    next_due        TEXT,                             -- next scheduled digest (prefilter)
    last_sent_at    TEXT,
    bounce_score    REAL NOT NULL DEFAULT 0,
    last_bounce_at  TEXT,
    last_error      TEXT
);
CREATE INDEX subscribers_due ON subscribers (status, frequency, next_due);

-- Every subscribe request; confirmation turns one into (or applies it to) a subscriber.
-- Counting the ones that were sent rate-limits confirmation messages per address.
CREATE TABLE subscribe_requests (
    id           INTEGER PRIMARY KEY,
    address      TEXT NOT NULL,
    address_key  TEXT NOT NULL,
    channel      TEXT NOT NULL,
    topics       TEXT NOT NULL,
    frequency    TEXT NOT NULL,
    tz           TEXT NOT NULL,
    hour         INTEGER NOT NULL,
    weekday      INTEGER NOT NULL,
    source       TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    expires_at   TEXT NOT NULL,
    sent         INTEGER NOT NULL DEFAULT 0,
    confirmed_at TEXT
);
CREATE INDEX subscribe_requests_address ON subscribe_requests (address_key, created_at);

-- Nonces of single-use tokens already used (confirmation links).
CREATE TABLE used_tokens (
    nonce      TEXT PRIMARY KEY,
    purpose    TEXT NOT NULL,
    used_at    TEXT NOT NULL,
    expires_at TEXT NOT NULL
);

-- Items that subscribers may get, in the order they arrived. seq, not the item id, is
-- the cursor: two feeds stored in parallel may queue their items out of id order.
CREATE TABLE digest_queue (
    seq       INTEGER PRIMARY KEY AUTOINCREMENT,
    item_id   INTEGER NOT NULL UNIQUE REFERENCES items (id),
    queued_at TEXT NOT NULL
);

-- One digest or notice: the queue range (from_seq, upto_seq] it covers for one
-- subscriber, claimed before anything is sent. UNIQUE (subscriber_id, period) is what
-- makes a period's digest exactly one row, however often the service restarts.
CREATE TABLE digest_runs (
    id            INTEGER PRIMARY KEY,
    subscriber_id INTEGER NOT NULL REFERENCES subscribers (id),
    period        TEXT NOT NULL,
    kind          TEXT NOT NULL,                      -- digest|immediate
    frequency     TEXT NOT NULL,                      -- daily|weekly|immediate
    from_seq      INTEGER NOT NULL,
    upto_seq      INTEGER NOT NULL,
    status        TEXT NOT NULL DEFAULT 'pending',    -- pending|sent|failed|dropped
    attempts      INTEGER NOT NULL DEFAULT 0,
    next_attempt  TEXT NOT NULL,                      -- also the lease of a worker
    last_error    TEXT,
    created_at    TEXT NOT NULL,
    sent_at       TEXT,
    UNIQUE (subscriber_id, period)
);
CREATE INDEX digest_runs_due ON digest_runs (status, next_attempt);
