-- libhub schema 13: rooms known to be end-to-end encrypted (once encrypted, always). An
-- instance that does not lead cannot encrypt (only the leader opens the crypto store), so
-- its outbox claims leave the rows of these rooms to the leader.

CREATE TABLE encrypted_rooms (
    room_id TEXT PRIMARY KEY,
    seen_at TEXT NOT NULL
);

-- A claim checks each due row against the waiting rows of its room (each room in order):
-- only pending rows, so a room's long sent history is not read.
CREATE INDEX outbox_room_pending ON outbox (target_type, target, id) WHERE status = 'pending';
