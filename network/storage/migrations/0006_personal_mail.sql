-- libhub schema 6: confirmations and manage links wait in a queue until the relay takes
-- them, and are retried like digests. One row per subscribe request that may send mail
-- (the request holds the address; its `sent` is 2 while the message waits, 1 once sent,
-- 0 when it was given up: only waiting and sent messages count against the address's
-- limit, so a lost confirmation does not shut the person out for a day).
CREATE TABLE personal_mail (
    request_id   INTEGER PRIMARY KEY REFERENCES subscribe_requests (id) ON DELETE CASCADE,
    kind         TEXT NOT NULL,                      -- confirm|manage
    status       TEXT NOT NULL DEFAULT 'pending',    -- pending|sent|failed
    attempts     INTEGER NOT NULL DEFAULT 0,         -- failures that count (not the relay's)
    next_attempt TEXT NOT NULL,                      -- also the lease of a sender
    last_error   TEXT,
    sent_at      TEXT
);
CREATE INDEX personal_mail_due ON personal_mail (status, next_attempt);
