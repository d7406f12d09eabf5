-- Ownership and SLA state (SPEC 6, 7): the pending handoff, a task's flag, the
-- clocks, and the commands given on the CLI (events on a task's timeline).

ALTER TABLE tasks ADD COLUMN pending_from TEXT;
ALTER TABLE tasks ADD COLUMN pending_to TEXT;
ALTER TABLE tasks ADD COLUMN pending_at TEXT;
ALTER TABLE tasks ADD COLUMN pending_due_at TEXT;
-- A bad tag or a hole in the map: orphans the task until the next valid change.
ALTER TABLE tasks ADD COLUMN flag TEXT;

-- Events derived by replaying a task are replaced on every re-derivation (derived = 1);
-- threading events (merged, moved) are facts and stay (derived = 0).
ALTER TABLE events ADD COLUMN derived INTEGER NOT NULL DEFAULT 0;

CREATE TABLE commands (
    id INTEGER PRIMARY KEY,
    task_id INTEGER NOT NULL,
    at TEXT NOT NULL,
    actor TEXT NOT NULL,
    verb TEXT NOT NULL,
    arg TEXT,
    note TEXT
);
CREATE INDEX commands_task ON commands(task_id, at);

-- Every SLA clock of every task as last derived: what `sla report` reads.
CREATE TABLE clocks (
    task_id INTEGER NOT NULL,
    kind TEXT NOT NULL,
    started_at TEXT NOT NULL,
    due_at TEXT NOT NULL,
    stopped_at TEXT,
    outcome TEXT NOT NULL,
    detail TEXT
);
CREATE INDEX clocks_task ON clocks(task_id);

-- Threading repairs by managers (SPEC 10 `merge`, `split`): kept as facts and applied
-- every time threads are computed, so they survive re-derivation.
CREATE TABLE thread_repairs (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,          -- 'merge' | 'split'
    message_id TEXT NOT NULL,    -- merge: a message of the kept task; split: the message split out
    other_id TEXT,               -- merge: a message of the task merged into it
    at TEXT NOT NULL,
    actor TEXT NOT NULL
);
