-- libhub schema 6: encrypted events the bot could not decrypt yet (their room key had not
-- arrived). Kept here, not in memory, so a restart before the key comes does not lose the
-- message: when the key arrives the event is decrypted and handled like any other.

CREATE TABLE undecrypted_events (
    event_id   TEXT PRIMARY KEY,
    room_id    TEXT NOT NULL,
    session_id TEXT NOT NULL,
    sender     TEXT NOT NULL,
    event_json TEXT NOT NULL,
    parked_at  REAL NOT NULL,   -- unix time it was first seen undecryptable
    told       INTEGER NOT NULL DEFAULT 0  -- its sender was told it could not be read
);
CREATE INDEX undecrypted_events_parked ON undecrypted_events (parked_at);
