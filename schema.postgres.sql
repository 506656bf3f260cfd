-- The livesession schema for PostgreSQL, at its newest version: the same tables as schema.sql,
-- in PostgreSQL's types. Applied in one transaction, under an advisory lock so that instances
-- starting together do not race, to a database that has none of it. The version is recorded in
-- `livesession_meta`; a database that records a newer one is refused. Upgrades live in
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

-- The last change number each page acknowledged, per form: a resent change is applied once,
-- whichever instance it reaches. Kept for an hour.
CREATE TABLE page_acks (
    session_id UUID NOT NULL,
    page       TEXT NOT NULL,
    form       TEXT NOT NULL,
    seq        BIGINT NOT NULL,
    acked_at   BIGINT NOT NULL,
    PRIMARY KEY (session_id, page, form)
);
CREATE INDEX page_acks_acked_at ON page_acks (acked_at);

-- Who has the chat open, one row per instance: its list (a JSON array of [session id, name]),
-- rewritten when it changes and at every heartbeat. An instance whose row was not rewritten for
-- three heartbeats is gone; its row is ignored, then deleted. Unlogged: nothing here outlives
-- the instances that wrote it, so a crash of the database may as well empty it.
CREATE UNLOGGED TABLE presence (
    instance TEXT PRIMARY KEY,
    roster   TEXT NOT NULL,
    beat_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- One-time codes that carry a session to another device: only the SHA-256 of the code is kept
-- (see schema.sql).
CREATE TABLE link_codes (
    code_hash    TEXT PRIMARY KEY,
    session_id   UUID NOT NULL,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    used_at      BIGINT,
    cancelled_at BIGINT
);
CREATE INDEX link_codes_session ON link_codes (session_id);
CREATE INDEX link_codes_expires_at ON link_codes (expires_at);

-- One row, rewritten by every health check: proof that the database takes a write.
CREATE TABLE health (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    checked_at BIGINT NOT NULL
);

-- A save in one statement, so one round trip: take the session's lock (a "forget me" of the same
-- session takes it too), then upsert. Each statement of a function takes its own snapshot, so the
-- upsert sees a forget that committed while it waited for the lock: a forgotten id is never
-- written again, and then no row comes back. A written row is announced to the other instances
-- when the transaction commits: `notice` followed by the row's new version.
-- A change from a live page names the page, form and change number: one that page_acks already
-- holds was applied before (by any instance) and comes back as `replayed`, changing nothing.
CREATE FUNCTION livesession_save(
    session UUID, new_username TEXT, new_theme TEXT, now_ms BIGINT, notice TEXT,
    from_page TEXT, from_form TEXT, change_seq BIGINT)
RETURNS TABLE (replayed BOOLEAN, saved_username TEXT, saved_theme TEXT, saved_version BIGINT,
               saved_read_at BIGINT)
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended(session::text, 0));
    IF from_page IS NOT NULL AND EXISTS (
        SELECT 1 FROM page_acks a
        WHERE a.session_id = session AND a.page = from_page AND a.form = from_form
          AND a.seq >= change_seq)
    THEN
        replayed := true;
        RETURN NEXT;
        RETURN;
    END IF;
    INSERT INTO settings AS s
        (session_id, username, theme, version, inserted_at, updated_at, read_at)
    SELECT session, coalesce(new_username, ''), coalesce(new_theme, 'system'), 1,
           now_ms, now_ms, now_ms
    WHERE NOT EXISTS (SELECT 1 FROM forgotten f WHERE f.session_id = session)
    ON CONFLICT (session_id) DO UPDATE SET
        version = s.version
            + CASE WHEN s.username IS DISTINCT FROM coalesce(new_username, s.username)
                     OR s.theme IS DISTINCT FROM coalesce(new_theme, s.theme)
                   THEN 1 ELSE 0 END,
        username = coalesce(new_username, s.username),
        theme = coalesce(new_theme, s.theme),
        updated_at = now_ms,
        read_at = greatest(s.read_at, now_ms)
    RETURNING s.username, s.theme, s.version, s.read_at
    INTO saved_username, saved_theme, saved_version, saved_read_at;
    IF FOUND THEN
        replayed := false;
        IF from_page IS NOT NULL THEN
            INSERT INTO page_acks AS a (session_id, page, form, seq, acked_at)
            VALUES (session, from_page, from_form, change_seq, now_ms)
            ON CONFLICT (session_id, page, form) DO UPDATE
                SET seq = greatest(a.seq, excluded.seq), acked_at = excluded.acked_at;
        END IF;
        PERFORM pg_notify('livesession', notice || saved_version::text);
        RETURN NEXT;
    END IF;
END
$$;

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

INSERT INTO livesession_meta (name, value) VALUES ('schema_version', '4');
