-- libhub schema 7: feeds and routes managed live (from a room with !feed, or from the
-- dashboard), and the audit log of who changed what. Feeds from the config file are not
-- here: the file is their source of truth. A live feed also has its row in `feeds` (what
-- polling learned), made in the same transaction.
CREATE TABLE live_feeds (
    id        TEXT PRIMARY KEY,
    url       TEXT NOT NULL,
    kind      TEXT NOT NULL DEFAULT 'news',
    title     TEXT NOT NULL DEFAULT '',
    rooms     TEXT NOT NULL DEFAULT '[]',   -- JSON list of room ids or aliases
    channels  TEXT NOT NULL DEFAULT '[]',   -- JSON list of channel names (config [channels])
    template  TEXT NOT NULL DEFAULT '',     -- matrix_template for its rooms ('' = default)
    filters   TEXT NOT NULL DEFAULT '[]',   -- JSON list of {"mode": keep|block, "pattern"}
    paused    INTEGER NOT NULL DEFAULT 0,
    added_by  TEXT NOT NULL,
    added_at  TEXT NOT NULL
);

-- Routes added on the dashboard: extra rooms and channels for items of some feeds/kinds.
CREATE TABLE live_routes (
    id               INTEGER PRIMARY KEY,
    feeds            TEXT NOT NULL DEFAULT '[]',
    kinds            TEXT NOT NULL DEFAULT '[]',
    rooms            TEXT NOT NULL DEFAULT '[]',
    channels         TEXT NOT NULL DEFAULT '[]',
    matrix_template  TEXT NOT NULL DEFAULT '',
    channel_template TEXT NOT NULL DEFAULT '',
    added_by         TEXT NOT NULL,
    added_at         TEXT NOT NULL
);

-- Who changed what, when: every live change to feeds and routes, from a room or the web.
CREATE TABLE audit_log (
    id      INTEGER PRIMARY KEY,
    at      TEXT NOT NULL,
    actor   TEXT NOT NULL,       -- a Matrix user id, or "dashboard:<who>", or "cli"
    action  TEXT NOT NULL,       -- feed.add, feed.remove, feed.pause, route.add, ...
    subject TEXT NOT NULL,       -- the feed id or "route <n>"
    detail  TEXT NOT NULL DEFAULT ''
);
CREATE INDEX audit_log_at ON audit_log (at);
