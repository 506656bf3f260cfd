-- The whole livesession schema, at its newest version. Applied in one transaction to a new
-- database at startup; an older database is brought here by the files in migrations/, in order.
-- The version below is what `PRAGMA user_version` records, and a database that records a newer
-- one is refused. Times are Unix milliseconds (UTC).

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

-- The chat log. Ids only grow (AUTOINCREMENT never reuses one, even after pruning), so a page
-- can ask for "everything after id N" and skip ids it already shows.
CREATE TABLE messages (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    author_session TEXT NOT NULL,   -- who sent it; used for "your message" and rate limits, never shown
    author_name    TEXT NOT NULL,   -- the username at the time it was sent ('' is anonymous)
    body           TEXT NOT NULL,
    nonce          TEXT NOT NULL,   -- chosen by the sending page: a resent message is stored once
    created_at     INTEGER NOT NULL
);
CREATE UNIQUE INDEX messages_author_nonce ON messages (author_session, nonce);
CREATE INDEX messages_created_at ON messages (created_at);

-- Sessions deleted by "forget me". Their cookies stay valid-looking for up to 400 days, so the
-- id is remembered (not its data) to refuse it until then: it can never be written or re-issued.
CREATE TABLE forgotten (
    session_id   TEXT PRIMARY KEY NOT NULL,
    forgotten_at INTEGER NOT NULL
) WITHOUT ROWID;

-- One row, rewritten by every health check: proof that the database takes a write.
CREATE TABLE health (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    checked_at INTEGER NOT NULL
);

-- The last change number each page acknowledged, per form: a page that lost an acknowledgement
-- resends its change, and a change already applied (here, by any instance, before a restart) is
-- acknowledged again instead of being applied over newer ones. Kept for an hour.
CREATE TABLE page_acks (
    session_id TEXT NOT NULL,
    page       TEXT NOT NULL,     -- chosen by the page, stable across its reconnects
    form       TEXT NOT NULL,
    seq        INTEGER NOT NULL,
    acked_at   INTEGER NOT NULL,
    PRIMARY KEY (session_id, page, form)
) WITHOUT ROWID;
CREATE INDEX page_acks_acked_at ON page_acks (acked_at);

-- One-time codes that carry a session to another device ("Use on another device"): only the
-- SHA-256 of the code is kept. A code is spent once (used_at), or cancelled, or expires; rows
-- are deleted by the prune a day after they expired.
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

-- The browsers of each session: each has its own id in its cookie (next to the session's), so one
-- can be signed out while the others go on. A row is made when a browser first saves something
-- (the first browser) or joins with a one-time code; `active_at` is written at most once per touch
-- window per device. The public handle a page names a device by is a hash of its id.
CREATE TABLE devices (
    device_id  TEXT PRIMARY KEY NOT NULL,
    session_id TEXT NOT NULL,
    name       TEXT NOT NULL DEFAULT '',   -- from its User-Agent, or as renamed; '' until seen
    added_at   INTEGER NOT NULL,
    added_by   TEXT NOT NULL CHECK (added_by IN ('first', 'code')),
    active_at  INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX devices_session ON devices (session_id);
CREATE INDEX devices_active_at ON devices (active_at);

-- Devices signed out (or pruned for idleness): their cookies stay valid-looking for up to 400
-- days, so the id is remembered, as a forgotten session's is, to refuse it until then.
CREATE TABLE signed_out (
    device_id     TEXT PRIMARY KEY NOT NULL,
    signed_out_at INTEGER NOT NULL
) WITHOUT ROWID;

PRAGMA user_version = 5;
