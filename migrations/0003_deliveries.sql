-- Outgoing mail (SPEC 9): digests and alerts, each claimed here before it is sent.
--
-- A row is the claim: at most one per (kind, recipient, key) unless forced (`digest
-- --force`). The message is rendered once, at the claim, and stored with its Message-ID, so
-- a retry after a failure or a crash sends the very same bytes.
CREATE TABLE deliveries (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,             -- personal | team | alert-near | alert-breach
    recipient TEXT NOT NULL,        -- a person's name
    key TEXT NOT NULL,              -- digests: the recipient's local day; alerts: the clock
    forced INTEGER NOT NULL DEFAULT 0,
    task_id INTEGER,                -- alerts: the task
    message_id TEXT NOT NULL UNIQUE,
    subject TEXT NOT NULL,
    addresses TEXT NOT NULL,        -- JSON list of envelope recipients
    raw BLOB NOT NULL,
    state TEXT NOT NULL DEFAULT 'claimed',  -- claimed | sending | sent | failed | expired
    attempts INTEGER NOT NULL DEFAULT 0,
    claimed_at TEXT NOT NULL,
    next_attempt_at TEXT NOT NULL,
    sent_at TEXT,
    sent_to TEXT,                   -- where it went: the SMTP server or the outbox file
    last_error TEXT,
    last_error_at TEXT
);
CREATE UNIQUE INDEX deliveries_once ON deliveries(kind, recipient, key) WHERE forced = 0;
CREATE INDEX deliveries_pending ON deliveries(state, next_attempt_at);
