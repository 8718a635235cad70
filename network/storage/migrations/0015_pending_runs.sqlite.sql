-- libhub schema 15 (SQLite): nothing to do. PostgreSQL gets a partial index of the pending
-- digest runs (see 0015_pending_runs.postgresql.sql); SQLite's planner reads the pending
-- runs through digest_runs_due and sorts them; it did not choose the index when offered.
SELECT 1;
