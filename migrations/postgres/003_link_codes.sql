-- Schema version 2 -> 3: one-time codes that carry a session to another device.
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
