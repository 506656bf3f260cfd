-- The whole livesession schema. Applied in one transaction to a new database at startup; the
-- version below is what `PRAGMA user_version` records, and a database that records a newer one is
-- refused. Times are Unix milliseconds (UTC).

-- One row per browser that has saved something. A browser that only looks has no row: its
-- settings are the defaults. The primary key means two tabs racing to create the row end with one.
CREATE TABLE settings (
    session_id  TEXT PRIMARY KEY NOT NULL,   -- the signed cookie's UUID, hyphenated lowercase
    username    TEXT NOT NULL DEFAULT '',     -- '' is anonymous
    theme       TEXT NOT NULL DEFAULT 'system' CHECK (theme IN ('system', 'light', 'dark')),
    version     INTEGER NOT NULL DEFAULT 1,   -- bumped by every write that changes a value
    inserted_at INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,             -- the last write
    read_at     INTEGER NOT NULL              -- the last use, read or write (within the touch window)
) WITHOUT ROWID;

-- Pruning walks the stalest rows first, a batch at a time.
CREATE INDEX settings_read_at ON settings (read_at);

PRAGMA user_version = 1;
