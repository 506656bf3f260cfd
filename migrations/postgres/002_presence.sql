-- Schema version 1 -> 2: who has the chat open, one row per instance (see schema.postgres.sql).
CREATE UNLOGGED TABLE presence (
    instance TEXT PRIMARY KEY,
    roster   TEXT NOT NULL,
    beat_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
