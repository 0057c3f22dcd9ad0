-- Authorization codes (RFC 6749 §4.1) and the redirect URIs they may be sent to.

-- Space-separated exact URIs (RFC 9700 §4.1.3: compared as strings, never as patterns). A URI
-- cannot contain a space (RFC 3986), so the separator is unambiguous.
ALTER TABLE clients ADD COLUMN redirect_uris TEXT NOT NULL DEFAULT '';

CREATE TABLE authorization_codes (
    -- SHA-256 (hex) of the code; the code itself is never stored.
    hash           TEXT PRIMARY KEY,
    client_id      TEXT NOT NULL,
    subject        TEXT NOT NULL,
    redirect_uri   TEXT NOT NULL,
    scope          TEXT NOT NULL,
    -- RFC 7636 S256 challenge.
    code_challenge TEXT NOT NULL,
    nonce          TEXT,
    auth_time      BIGINT NOT NULL,
    issued_at      BIGINT NOT NULL,
    expires_at     BIGINT NOT NULL,
    -- Set once, by the one redemption that wins, together with the family it created: a
    -- later reuse revokes that family (RFC 6749 §4.1.2).
    used_at        BIGINT,
    family_id      TEXT
);
CREATE INDEX authorization_codes_expires_at ON authorization_codes (expires_at);
