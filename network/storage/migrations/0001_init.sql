-- libhub schema 1: feeds, items, the delivery outbox and the Matrix session state.
-- Times are ISO-8601 UTC strings ("2026-11-23T08:00:00+00:00"): sortable and readable.

-- Small key/value state that must survive restarts: the Matrix device id, access
-- token and next_batch sync token.
CREATE TABLE state (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- One row per configured feed; config is the source of truth for url/kind/rooms,
-- this row holds what polling learned (validators, health, a permanent redirect).
CREATE TABLE feeds (
    id                 TEXT PRIMARY KEY,
    config_url         TEXT NOT NULL,
    url                TEXT NOT NULL,          -- after 301/308 redirects
    title              TEXT NOT NULL DEFAULT '',
    link               TEXT,
    etag               TEXT,
    last_modified      TEXT,
    body_hash          TEXT,
    status             TEXT NOT NULL DEFAULT 'new',  -- new|ok|failing|gone|not-a-feed
    last_check         TEXT,
    last_success       TEXT,
    next_check         TEXT,
    consecutive_errors INTEGER NOT NULL DEFAULT 0,
    last_error         TEXT,
    warning            TEXT,
    initial_sync_done  INTEGER NOT NULL DEFAULT 0,
    outage_notified    INTEGER NOT NULL DEFAULT 0
);

-- Every item ever seen. (feed_id, key) is the dedupe identity; content_hash detects
-- edits at the publisher, version counts them.
CREATE TABLE items (
    id            INTEGER PRIMARY KEY,
    feed_id       TEXT NOT NULL,
    key           TEXT NOT NULL,
    kind          TEXT NOT NULL,
    title         TEXT NOT NULL,
    link          TEXT,
    published     TEXT,
    author        TEXT,
    categories    TEXT NOT NULL DEFAULT '[]',   -- JSON list
    summary_html  TEXT NOT NULL DEFAULT '',
    enclosures    TEXT NOT NULL DEFAULT '[]',   -- JSON list of {url,type,length}
    event_start   TEXT,
    content_hash  TEXT NOT NULL,
    version       INTEGER NOT NULL DEFAULT 1,
    first_seen    TEXT NOT NULL,
    updated_at    TEXT NOT NULL,
    UNIQUE (feed_id, key)
);
-- Digests read items by time window.
CREATE INDEX items_first_seen ON items (first_seen);

-- The outbox: one row per (item, target, version). Written in the same transaction as
-- the item so a crash can never lose a delivery; txn_id is created once and reused on
-- every retry so the homeserver deduplicates a resend.
CREATE TABLE outbox (
    id           INTEGER PRIMARY KEY,
    item_id      INTEGER NOT NULL REFERENCES items (id),
    item_version INTEGER NOT NULL DEFAULT 1,
    action       TEXT NOT NULL DEFAULT 'post',   -- post|edit
    target_type  TEXT NOT NULL,                  -- matrix|apprise
    target       TEXT NOT NULL,                  -- room ref or apprise URL
    channel      TEXT,                           -- channel name for apprise rows
    txn_id       TEXT NOT NULL UNIQUE,
    status       TEXT NOT NULL DEFAULT 'pending', -- pending|sent|failed|skipped
    attempts     INTEGER NOT NULL DEFAULT 0,
    next_attempt TEXT NOT NULL,
    last_error   TEXT,
    event_id     TEXT,
    created_at   TEXT NOT NULL,
    sent_at      TEXT,
    UNIQUE (item_id, item_version, action, target_type, target)
);
-- Workers claim due rows in order.
CREATE INDEX outbox_due ON outbox (status, next_attempt);

-- Room references from config (alias or id) resolved to room ids, once.
CREATE TABLE rooms (
    ref       TEXT PRIMARY KEY,
    room_id   TEXT NOT NULL,
    joined_at TEXT
);

-- Matrix events already handled, so a restart never answers a message twice.
CREATE TABLE processed_events (
    event_id     TEXT PRIMARY KEY,
    room_id      TEXT NOT NULL,
    processed_at TEXT NOT NULL
);
