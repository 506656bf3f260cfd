-- The livesession schema for PostgreSQL, at its newest version: the same tables as schema.sql,
-- in PostgreSQL's types. Applied in one transaction, under an advisory lock so that instances
-- starting together do not race, to a database that has none of it. The version is recorded in
-- `livesession_meta`; a database that records a newer one is refused. Upgrades will live in
-- migrations/postgres/, in order, like SQLite's. Times are Unix milliseconds (UTC).

-- What this database is: its schema version, and the fingerprint of the key that signs cookies
-- (every instance must share it).
CREATE TABLE livesession_meta (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- One row per browser that has saved something; a browser that only looks has no row.
CREATE TABLE settings (
    session_id  UUID PRIMARY KEY,
    username    TEXT NOT NULL DEFAULT '',
    theme       TEXT NOT NULL DEFAULT 'system' CHECK (theme IN ('system', 'light', 'dark')),
    version     BIGINT NOT NULL DEFAULT 1,   -- bumped by every write that changes a value
    inserted_at BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,             -- the last write
    read_at     BIGINT NOT NULL              -- the last use, read or write (within the touch window)
);

-- Pruning walks the stalest rows first, a batch at a time.
CREATE INDEX settings_read_at ON settings (read_at);

-- The chat log. Ids only grow and are never reused. Posts take a lock, so ids also commit in
-- order: a page that has seen id N has seen every message below N that it ever will.
CREATE TABLE messages (
    id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    author_session UUID NOT NULL,
    author_name    TEXT NOT NULL,
    body           TEXT NOT NULL,
    nonce          TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    UNIQUE (author_session, nonce)
);
CREATE INDEX messages_created_at ON messages (created_at);

-- Sessions deleted by "forget me": refused until their cookies have expired.
CREATE TABLE forgotten (
    session_id   UUID PRIMARY KEY,
    forgotten_at BIGINT NOT NULL
);

-- One row, rewritten by every health check: proof that the database takes a write.
CREATE TABLE health (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    checked_at BIGINT NOT NULL
);

INSERT INTO livesession_meta (name, value) VALUES ('schema_version', '1');
