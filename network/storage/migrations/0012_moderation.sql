-- libhub schema 12: moderation before public channels.
--
-- A held delivery is an outbox row with status 'held': the delivery loop claims only
-- 'pending' rows, so it waits until a coordinator approves it (-> 'pending', then sent
-- once like any row) or rejects it (-> 'rejected', never sent). No new queue table: the
-- row, its transaction id and its exactly-once guarantees are the ones it already had.

-- The audit log (who did what, when) is migration 11's: approvals, rejections and edits of
-- held items are written to it too.

-- The ops-room notice posted for each held item: a reaction to it approves or rejects.
-- txn_id is derived from the item, so a notice re-sent after a crash is the same event.
CREATE TABLE moderation_notices (
    item_id   INTEGER PRIMARY KEY REFERENCES items (id),
    room_id   TEXT NOT NULL,
    event_id  TEXT NOT NULL UNIQUE,
    posted_at TEXT NOT NULL
);

-- Trends read delivered rows by day.
CREATE INDEX outbox_sent_at ON outbox (sent_at);
