-- Version 3 -> 4: one-time codes that carry a session to another device. Nothing else changes.
CREATE TABLE link_codes (
    code_hash    TEXT PRIMARY KEY NOT NULL,
    session_id   TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    used_at      INTEGER,
    cancelled_at INTEGER
) WITHOUT ROWID;
CREATE INDEX link_codes_session ON link_codes (session_id);
CREATE INDEX link_codes_expires_at ON link_codes (expires_at);

PRAGMA user_version = 4;
