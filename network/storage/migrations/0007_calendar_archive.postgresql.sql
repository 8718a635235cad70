-- libhub schema 7 on PostgreSQL: the subscribable calendars and the public archive.
-- (The SQLite step is 0007_calendar_archive.sql; full-text search there is FTS5, here a
-- GIN index over the same words, read by archive.py's PostgreSQL query.)

CREATE TABLE calendar_events (
    item_id     BIGINT PRIMARY KEY REFERENCES items (id),
    sequence    BIGINT NOT NULL DEFAULT 0,
    fingerprint TEXT COLLATE "C" NOT NULL DEFAULT '',
    start       TEXT COLLATE "C",
    status      TEXT COLLATE "C" NOT NULL DEFAULT 'confirmed',
    removed_at  TEXT COLLATE "C",
    changed_at  TEXT COLLATE "C" NOT NULL
);

CREATE INDEX items_kind_start ON items (kind, event_start);
CREATE INDEX items_scope ON items (id, feed_id, kind);

-- The words of an item's title and summary, as archive.py searches them.
CREATE INDEX items_search ON items USING GIN (
    to_tsvector('simple', coalesce(title, '') || ' ' || coalesce(summary_html, ''))
);
