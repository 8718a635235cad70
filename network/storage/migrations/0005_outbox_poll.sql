-- libhub schema 5: the poll that created an outbox row. A burst of one poll for one room
-- becomes grouped messages; the group is found by this id, which one store transaction
-- gives all its rows and no later poll shares (created_at has one-second resolution and
-- feeds polled in the same cycle share it, so a later feed could join a group already
-- sent, and the homeserver would answer its retry with the old, smaller message).

ALTER TABLE outbox ADD COLUMN poll TEXT;
-- Rows from before: their old grouping key, so a retried group stays what it was.
UPDATE outbox SET poll = created_at WHERE action = 'post';
CREATE INDEX outbox_poll ON outbox (target_type, target, poll);
