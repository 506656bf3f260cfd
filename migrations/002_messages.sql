-- Version 1 -> 2: the chat log, the ids of forgotten sessions, the health probe. Settings are
-- untouched.
CREATE TABLE messages (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    author_session TEXT NOT NULL,
    author_name    TEXT NOT NULL,
    body           TEXT NOT NULL,
    nonce          TEXT NOT NULL,
    created_at     INTEGER NOT NULL
);
CREATE UNIQUE INDEX messages_author_nonce ON messages (author_session, nonce);
CREATE INDEX messages_created_at ON messages (created_at);

CREATE TABLE forgotten (
    session_id   TEXT PRIMARY KEY NOT NULL,
    forgotten_at INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE health (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    checked_at INTEGER NOT NULL
);

PRAGMA user_version = 2;
