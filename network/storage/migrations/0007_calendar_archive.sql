-- libhub schema 6: the subscribable calendars and the public archive.

-- What the calendar feeds last published of each webinar. A calendar program keeps the
-- event with the highest SEQUENCE for a UID, so every change a subscriber must see (a new
-- time, a new title, a cancellation) raises it. fingerprint is a hash of what was
-- published; removed_at is set when the item left its feed while still upcoming.
CREATE TABLE calendar_events (
    item_id     INTEGER PRIMARY KEY REFERENCES items (id),
    sequence    INTEGER NOT NULL DEFAULT 0,
    fingerprint TEXT NOT NULL DEFAULT '',
    start       TEXT,                                -- the start last published
    status      TEXT NOT NULL DEFAULT 'confirmed',   -- confirmed|cancelled
    removed_at  TEXT,
    changed_at  TEXT NOT NULL
);

-- Webinars are found by kind and start (the calendars list them).
CREATE INDEX items_kind_start ON items (kind, event_start);
-- Archive pages, newest first: which items a page shows is decided from this small index
-- alone (in id order), so skipping to page 200 does not read 4,000 full rows.
CREATE INDEX items_scope ON items (id, feed_id, kind);

-- Full-text search over the items' titles and summaries. External content (the items
-- table holds the text once); the triggers keep the index in step with every insert,
-- update and delete, whoever writes the row.
CREATE VIRTUAL TABLE items_fts USING fts5(
    title, summary_html, content = 'items', content_rowid = 'id',
    tokenize = 'unicode61 remove_diacritics 2'
);
CREATE TRIGGER items_fts_insert AFTER INSERT ON items BEGIN
    INSERT INTO items_fts (rowid, title, summary_html)
    VALUES (new.id, new.title, new.summary_html);
END;
CREATE TRIGGER items_fts_delete AFTER DELETE ON items BEGIN
    INSERT INTO items_fts (items_fts, rowid, title, summary_html)
    VALUES ('delete', old.id, old.title, old.summary_html);
END;
CREATE TRIGGER items_fts_update AFTER UPDATE OF title, summary_html ON items BEGIN
    INSERT INTO items_fts (items_fts, rowid, title, summary_html)
    VALUES ('delete', old.id, old.title, old.summary_html);
    INSERT INTO items_fts (rowid, title, summary_html)
    VALUES (new.id, new.title, new.summary_html);
END;
-- Items stored before this version.
INSERT INTO items_fts (items_fts) VALUES ('rebuild');
