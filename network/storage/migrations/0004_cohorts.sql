-- libhub schema 4: the community of practice. Rooms libhub manages (the network's space,
-- network-wide rooms, cohort rooms), whom it invited or emailed, welcomes, members' cohort
-- updates, weekly prompts, webinar reminders and used dashboard login tokens.

-- The rooms of the community, by config key ("space", "room:#alias", "cohort:<id>").
CREATE TABLE community_rooms (
    key                TEXT PRIMARY KEY,
    ref                TEXT NOT NULL,          -- alias or room id from config
    room_id            TEXT NOT NULL,
    resources_hash     TEXT,                   -- of the pinned resources message's text
    resources_event_id TEXT,
    updated_at         TEXT NOT NULL
);

-- Matrix ids libhub invited into a room. Only these are ever removed again (when
-- community.manage_membership is on), and they are not re-invited after leaving.
CREATE TABLE community_invites (
    room_id    TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    invited_at TEXT NOT NULL,
    PRIMARY KEY (room_id, user_id)
);

-- Invitation emails sent to members listed by email address: one each, ever.
CREATE TABLE community_emails (
    cohort_id TEXT NOT NULL,
    email     TEXT NOT NULL,
    sent_at   TEXT NOT NULL,
    PRIMARY KEY (cohort_id, email)
);

-- Welcome messages posted in cohort rooms: one per person and cohort.
CREATE TABLE cohort_welcomes (
    cohort_id   TEXT NOT NULL,
    user_id     TEXT NOT NULL,
    event_id    TEXT NOT NULL,
    welcomed_at TEXT NOT NULL,
    PRIMARY KEY (cohort_id, user_id)
);

-- Cohort updates posted by members; the item itself lives in items (feed "cohort:<id>").
CREATE TABLE cohort_updates (
    event_id   TEXT PRIMARY KEY,                 -- the member's message
    item_id    INTEGER NOT NULL REFERENCES items (id),
    cohort_id  TEXT NOT NULL,
    room_id    TEXT NOT NULL,
    sender     TEXT NOT NULL,
    library    TEXT,
    status     TEXT NOT NULL DEFAULT 'active',   -- active|withdrawn
    posted_at  TEXT NOT NULL,
    changed_at TEXT NOT NULL
);
CREATE INDEX cohort_updates_sender ON cohort_updates (cohort_id, sender, posted_at);
CREATE INDEX cohort_updates_item ON cohort_updates (item_id);

-- Weekly "what did your library try this week?" prompts, one per cohort and week.
CREATE TABLE cohort_prompts (
    cohort_id TEXT NOT NULL,
    week      TEXT NOT NULL,                     -- ISO week, "2026-W47"
    room_id   TEXT NOT NULL,
    event_id  TEXT NOT NULL,
    posted_at TEXT NOT NULL,
    PRIMARY KEY (cohort_id, week)
);
CREATE INDEX cohort_prompts_event ON cohort_prompts (event_id);

-- Webinar reminders: one row per (webinar item, room, lead, start time). A moved webinar
-- cancels its unsent rows and gets new ones; txn_id is derived from the row's identity so
-- a resend after a crash returns the event already posted.
CREATE TABLE webinar_reminders (
    id           INTEGER PRIMARY KEY,
    item_id      INTEGER NOT NULL REFERENCES items (id),
    room         TEXT NOT NULL,
    lead_seconds INTEGER NOT NULL,
    start        TEXT NOT NULL,
    due_at       TEXT NOT NULL,
    status       TEXT NOT NULL DEFAULT 'pending',  -- pending|sent|cancelled|dropped|failed
    txn_id       TEXT NOT NULL UNIQUE,
    attempts     INTEGER NOT NULL DEFAULT 0,
    next_attempt TEXT NOT NULL,
    last_error   TEXT,
    event_id     TEXT,
    created_at   TEXT NOT NULL,
    sent_at      TEXT,
    UNIQUE (item_id, room, lead_seconds, start)
);
CREATE INDEX webinar_reminders_due ON webinar_reminders (status, next_attempt);

-- Dashboard login tokens already exchanged for a session: each works once.
CREATE TABLE dashboard_logins (
    nonce   TEXT PRIMARY KEY,
    subject TEXT NOT NULL,
    used_at TEXT NOT NULL
);
