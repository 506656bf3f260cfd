-- Version 2 -> 3: the last change number each page acknowledged, so a resent change is applied
-- once, across restarts. Nothing else changes.
CREATE TABLE page_acks (
    session_id TEXT NOT NULL,
    page       TEXT NOT NULL,
    form       TEXT NOT NULL,
    seq        INTEGER NOT NULL,
    acked_at   INTEGER NOT NULL,
    PRIMARY KEY (session_id, page, form)
) WITHOUT ROWID;
CREATE INDEX page_acks_acked_at ON page_acks (acked_at);

PRAGMA user_version = 3;
