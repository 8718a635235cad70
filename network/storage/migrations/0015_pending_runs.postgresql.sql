-- libhub schema 15 (PostgreSQL): the pending digest runs, in the order senders lease them.
--
-- lease_runs takes "status = 'pending' ... ORDER BY id LIMIT 500". With only the
-- (status, next_attempt) index, PostgreSQL walked the primary key past every run already
-- sent: half-way through a 100,000-subscriber round, 41 ms a batch (EXPLAIN ANALYZE);
-- this index holds only the pending runs, in id order (7 ms).
CREATE INDEX digest_runs_pending ON digest_runs (id) WHERE status = 'pending';
