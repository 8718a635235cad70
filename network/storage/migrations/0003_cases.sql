-- libhub schema 3: the assistance bot. Rooms it has seen, an inbox of events it still has to
-- handle, its answers and the feedback on them, and Need Assistance cases.

-- Per room: when the bot joined (events older than that are history, never answered) and
-- whether it already said it cannot read encrypted messages or greeted a direct chat.
CREATE TABLE bot_rooms (
    room_id           TEXT PRIMARY KEY,
    joined_ts         INTEGER,                  -- origin_server_ts (ms) of the bot's join
    encryption_warned INTEGER NOT NULL DEFAULT 0,
    greeted           INTEGER NOT NULL DEFAULT 0
);

-- Events the sync loop handed over and the bot has not finished yet. Written before
-- next_batch is saved, deleted (and recorded in processed_events) once handled, so a
-- crash in between replays the event and its idempotent sends.
CREATE TABLE bot_inbox (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id    TEXT NOT NULL UNIQUE,
    room_id     TEXT NOT NULL,
    event_json  TEXT NOT NULL,
    received_at TEXT NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    last_error  TEXT
);

-- Every reply the bot gave to a question (answer, "not sure", escalation notice): reactions
-- point at it, and !human without a question reuses the asker's last one.
CREATE TABLE bot_answers (
    event_id          TEXT PRIMARY KEY,
    room_id           TEXT NOT NULL,
    question_event_id TEXT NOT NULL,
    asker             TEXT NOT NULL,
    question          TEXT NOT NULL,
    page              TEXT,
    score             REAL NOT NULL,
    escalated         INTEGER NOT NULL DEFAULT 0,
    created_at        TEXT NOT NULL
);
CREATE INDEX bot_answers_asker ON bot_answers (room_id, asker, created_at);

-- 👍 / 👎 reactions on the bot's replies.
CREATE TABLE answer_feedback (
    reaction_event_id TEXT PRIMARY KEY,
    answer_event_id   TEXT NOT NULL,
    sender            TEXT NOT NULL,
    vote              TEXT NOT NULL,            -- up|down
    created_at        TEXT NOT NULL
);
CREATE INDEX answer_feedback_answer ON answer_feedback (answer_event_id);

-- Need Assistance cases: one per escalated question, a thread in the team room. The state
-- columns mirror bots.case_state.Case.
CREATE TABLE cases (
    id                INTEGER PRIMARY KEY,
    question_event_id TEXT NOT NULL UNIQUE,
    question          TEXT NOT NULL,
    asker             TEXT NOT NULL,
    asker_room        TEXT NOT NULL,
    asker_is_direct   INTEGER NOT NULL,
    asker_thread_root TEXT,                     -- group rooms: the thread relays go to
    guess_page        TEXT,
    guess_score       REAL,
    team_room         TEXT NOT NULL,
    thread_root       TEXT NOT NULL UNIQUE,     -- the case's root message in the team room
    state             TEXT NOT NULL,            -- open|claimed|answered|closed
    claimed_by        TEXT,
    opened_at         TEXT NOT NULL,
    last_activity_at  TEXT NOT NULL,
    answered_at       TEXT,
    closed_at         TEXT,
    reminders_sent    INTEGER NOT NULL DEFAULT 0,
    waiting_since     TEXT,
    email_status      TEXT NOT NULL DEFAULT 'none',  -- none|pending|sent|failed
    email_attempts    INTEGER NOT NULL DEFAULT 0,
    email_error       TEXT
);
CREATE INDEX cases_asker ON cases (asker_room, asker, state);
CREATE INDEX cases_state ON cases (state);

-- What happened in a case: the team's answers and notes, the asker's follow-ups, and the
-- bot's messages to the asker. sent_event_id maps a relayed message back to its case.
CREATE TABLE case_messages (
    id              INTEGER PRIMARY KEY,
    case_id         INTEGER NOT NULL REFERENCES cases (id),
    kind            TEXT NOT NULL,              -- ack|answer|note|followup|to_asker
    sender          TEXT NOT NULL,
    body            TEXT NOT NULL,
    source_event_id TEXT NOT NULL,
    sent_event_id   TEXT,
    created_at      TEXT NOT NULL,
    UNIQUE (source_event_id, kind)
);
CREATE INDEX case_messages_case ON case_messages (case_id);
CREATE INDEX case_messages_sent ON case_messages (sent_event_id);
