-- libhub schema 7: several libhub instances on one database (PostgreSQL).

-- Every running instance, with its heartbeat: /healthz and the dashboard list them.
CREATE TABLE instances (
    id           TEXT PRIMARY KEY,               -- host:pid:random, new at each start
    host         TEXT NOT NULL,
    pid          INTEGER NOT NULL,
    started_at   TEXT NOT NULL,
    heartbeat_at TEXT NOT NULL
);

-- Leases on work that must run in one place: 'leader' (Matrix sync and the bot, the
-- schedulers, cohort sync). The holder renews expires_at by heartbeat; when it stops,
-- another instance takes the lease once it has expired. token changes hands with it.
CREATE TABLE leases (
    name       TEXT PRIMARY KEY,
    holder     TEXT NOT NULL,
    token      TEXT NOT NULL,
    expires_at TEXT NOT NULL
);

-- The claim that leased an outbox row: only that claim may mark it sent (fencing), so an
-- instance whose lease ran out cannot overwrite the work of the one that took over.
ALTER TABLE outbox ADD COLUMN lease_token TEXT;
