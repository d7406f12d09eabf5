CREATE TABLE "_sqlite_migrations" (
   "id" INTEGER PRIMARY KEY,
   "migration_set" TEXT,
   "name" TEXT,
   "applied_at" TEXT
);
CREATE TABLE bodies (
    message INTEGER PRIMARY KEY REFERENCES messages(id),
    text TEXT NOT NULL DEFAULT '',
    reply_text TEXT NOT NULL DEFAULT ''
);
CREATE TABLE clocks (
    task_id INTEGER NOT NULL,
    kind TEXT NOT NULL,
    started_at TEXT NOT NULL,
    due_at TEXT NOT NULL,
    stopped_at TEXT,
    outcome TEXT NOT NULL,
    detail TEXT
);
CREATE TABLE commands (
    id INTEGER PRIMARY KEY,
    task_id INTEGER NOT NULL,
    at TEXT NOT NULL,
    actor TEXT NOT NULL,
    verb TEXT NOT NULL,
    arg TEXT,
    note TEXT
);
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
CREATE TABLE events (
    id INTEGER PRIMARY KEY,
    task_id INTEGER NOT NULL,
    at TEXT NOT NULL,
    kind TEXT NOT NULL,
    rule TEXT,
    message_id TEXT,
    actor TEXT,
    owner_from TEXT,
    owner_to TEXT,
    detail TEXT
, derived INTEGER NOT NULL DEFAULT 0);
CREATE TABLE locations (
    message INTEGER NOT NULL REFERENCES messages(id),
    inbox TEXT NOT NULL,
    source TEXT NOT NULL,
    key TEXT NOT NULL,
    uidvalidity INTEGER,
    uid INTEGER,
    seen_at TEXT NOT NULL,
    PRIMARY KEY (inbox, source, key)
);
CREATE TABLE messages (
    id INTEGER PRIMARY KEY,
    message_id TEXT NOT NULL UNIQUE,
    synthetic_id INTEGER NOT NULL DEFAULT 0,
    in_reply_to TEXT NOT NULL DEFAULT '[]',
    refs TEXT NOT NULL DEFAULT '[]',
    from_name TEXT,
    from_addr TEXT,
    to_addrs TEXT NOT NULL DEFAULT '[]',
    cc_addrs TEXT NOT NULL DEFAULT '[]',
    reply_to TEXT NOT NULL DEFAULT '[]',
    date TEXT NOT NULL,
    date_is_fallback INTEGER NOT NULL DEFAULT 0,
    seen_at TEXT NOT NULL,
    subject TEXT NOT NULL DEFAULT '',
    base_subject TEXT NOT NULL DEFAULT '',
    normalized_subject TEXT NOT NULL DEFAULT '',
    is_forward INTEGER NOT NULL DEFAULT 0,
    thread_index TEXT,
    auto_submitted TEXT,
    precedence TEXT,
    x_autoreply INTEGER NOT NULL DEFAULT 0,
    list_id TEXT,
    attachments TEXT NOT NULL DEFAULT '[]',
    defects TEXT NOT NULL DEFAULT '[]',
    size INTEGER NOT NULL DEFAULT 0,
    shared INTEGER NOT NULL DEFAULT 1,
    -- derived by threading and coordination
    task_id INTEGER REFERENCES tasks(id),
    joined_by TEXT,
    kind TEXT,
    effective_at TEXT
);
CREATE TABLE quarantine (
    id INTEGER PRIMARY KEY,
    inbox TEXT NOT NULL,
    source TEXT NOT NULL,
    key TEXT NOT NULL,
    reason TEXT NOT NULL,
    size INTEGER NOT NULL DEFAULT 0,
    seen_at TEXT NOT NULL,
    UNIQUE (inbox, source, key)
);
CREATE TABLE sources (
    inbox TEXT NOT NULL,
    source TEXT NOT NULL,
    uidvalidity INTEGER,
    last_uid INTEGER,
    highestmodseq INTEGER,
    offset_bytes INTEGER,
    messages INTEGER NOT NULL DEFAULT 0,
    last_sync_at TEXT,
    last_error TEXT,
    last_error_at TEXT,
    PRIMARY KEY (inbox, source)
);
CREATE TABLE task_aliases (
    old_id INTEGER PRIMARY KEY,
    task_id INTEGER NOT NULL,
    at TEXT NOT NULL
);
CREATE TABLE tasks (
    id INTEGER PRIMARY KEY,
    is_task INTEGER NOT NULL DEFAULT 0,
    root_message_id TEXT NOT NULL,
    subject TEXT NOT NULL DEFAULT '',
    client TEXT,
    owner TEXT,
    stage TEXT,
    status TEXT NOT NULL DEFAULT 'open',
    opened_at TEXT NOT NULL,
    last_activity_at TEXT NOT NULL,
    due_at TEXT,
    orphaned INTEGER NOT NULL DEFAULT 1,
    message_count INTEGER NOT NULL DEFAULT 0,
    inboxes TEXT NOT NULL DEFAULT '[]',
    last_from TEXT,
    config_fingerprint TEXT,
    derived_at TEXT
, pending_from TEXT, pending_to TEXT, pending_at TEXT, pending_due_at TEXT, flag TEXT);
CREATE TABLE thread_repairs (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,          -- 'merge' | 'split'
    message_id TEXT NOT NULL,    -- merge: a message of the kept task; split: the message split out
    other_id TEXT,               -- merge: a message of the task merged into it
    at TEXT NOT NULL,
    actor TEXT NOT NULL
);
CREATE INDEX clocks_task ON clocks(task_id);
CREATE INDEX commands_task ON commands(task_id, at);
CREATE UNIQUE INDEX deliveries_once ON deliveries(kind, recipient, key) WHERE forced = 0;
CREATE INDEX deliveries_pending ON deliveries(state, next_attempt_at);
CREATE INDEX events_task ON events(task_id, at);
CREATE UNIQUE INDEX "idx__sqlite_migrations_migration_set_name"
    ON "_sqlite_migrations" ("migration_set", "name");
CREATE INDEX locations_message ON locations(message);
CREATE INDEX messages_task ON messages(task_id);
CREATE INDEX tasks_listing ON tasks(is_task, status, due_at, last_activity_at);
