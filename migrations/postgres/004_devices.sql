-- Schema version 3 -> 4: each browser its own device under its session; every session that has
-- saved something gets its first device, with the session's own id (see migrations/005_devices.sql).
-- Each session's browsers, and the devices signed out (see schema.sql).
CREATE TABLE devices (
    device_id  UUID PRIMARY KEY,
    session_id UUID NOT NULL,
    name       TEXT NOT NULL DEFAULT '',
    added_at   BIGINT NOT NULL,
    added_by   TEXT NOT NULL CHECK (added_by IN ('first', 'code')),
    active_at  BIGINT NOT NULL
);
CREATE INDEX devices_session ON devices (session_id);
CREATE INDEX devices_active_at ON devices (active_at);

CREATE TABLE signed_out (
    device_id     UUID PRIMARY KEY,
    signed_out_at BIGINT NOT NULL
);

INSERT INTO devices (device_id, session_id, name, added_at, added_by, active_at)
SELECT session_id, session_id, '', inserted_at, 'first', read_at FROM settings;
