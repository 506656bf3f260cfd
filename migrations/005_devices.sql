-- Version 4 -> 5: each browser its own device under its session. Every session that has
-- saved something gets one device, its first, whose id is the session's own: a cookie that names
-- only its session is that device, so nobody has to link again.
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

INSERT INTO devices (device_id, session_id, name, added_at, added_by, active_at)
SELECT session_id, session_id, '', inserted_at, 'first', read_at FROM settings;

PRAGMA user_version = 5;
