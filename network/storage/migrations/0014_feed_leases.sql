-- libhub schema 14: due feeds are leased, so every instance on one PostgreSQL polls a share
-- of them (SQLite takes the same leases, with one process).

-- Listed in the config file at the last start (sync_feeds): with live_feeds (not paused),
-- which feeds are polled at all. A feed taken out of the file keeps its row and history
-- but is never leased again.
ALTER TABLE feeds ADD COLUMN in_config INTEGER NOT NULL DEFAULT 0;
-- The poll that holds the feed until lease_until. update_feed ends the lease (lease_until
-- NULL) and leaves the token as the last claim's: a cycle never takes a feed twice, and a
-- result commits only while the token is still its poll's (fencing).
ALTER TABLE feeds ADD COLUMN lease_until TEXT;
ALTER TABLE feeds ADD COLUMN lease_token TEXT;
