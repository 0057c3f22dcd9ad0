-- khoa's first schema, SQLite flavour.
-- Timestamps are INTEGER unix seconds, booleans INTEGER 0/1, scope sets and grant-type lists
-- space-separated TEXT, token hashes lowercase hex SHA-256. No token is ever stored in clear.
-- Tables keep their rowid: `purge_expired` deletes in rowid batches.

CREATE TABLE users (
    id             TEXT PRIMARY KEY NOT NULL,
    username       TEXT NOT NULL UNIQUE,
    password_hash  TEXT NOT NULL,
    disabled       INTEGER NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1)),
    -- NULL: the client's allowed scopes decide alone.
    allowed_scopes TEXT,
    created_at     INTEGER NOT NULL
);

CREATE TABLE clients (
    client_id        TEXT PRIMARY KEY NOT NULL,
    name             TEXT NOT NULL,
    -- NULL: a public client.
    secret_hash      TEXT,
    allowed_scopes   TEXT NOT NULL,
    default_scopes   TEXT NOT NULL,
    grant_types      TEXT NOT NULL,
    access_format    TEXT NOT NULL,
    access_ttl       INTEGER NOT NULL,
    refresh_issuance TEXT NOT NULL,
    refresh_ttl      INTEGER NOT NULL,
    session_lifetime INTEGER NOT NULL,
    reuse_window     INTEGER NOT NULL,
    refresh_format   TEXT NOT NULL DEFAULT 'opaque',
    -- 1: every access token gets a bound otp_token (seed 000).
    otp              INTEGER NOT NULL DEFAULT 0 CHECK (otp IN (0, 1)),
    disabled         INTEGER NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1)),
    created_at       INTEGER NOT NULL
);

CREATE TABLE token_families (
    id                 TEXT PRIMARY KEY NOT NULL,
    client_id          TEXT NOT NULL,
    subject            TEXT NOT NULL,
    scope              TEXT NOT NULL,
    created_at         INTEGER NOT NULL,
    session_expires_at INTEGER NOT NULL,
    revoked_at         INTEGER
);
CREATE INDEX token_families_session_expires_at ON token_families (session_expires_at);

CREATE TABLE refresh_tokens (
    hash             TEXT PRIMARY KEY NOT NULL,
    family_id        TEXT NOT NULL REFERENCES token_families (id) ON DELETE CASCADE,
    issued_at        INTEGER NOT NULL,
    expires_at       INTEGER NOT NULL,
    used_at          INTEGER,
    successor_hash   TEXT,
    -- The successor sealed under a key derived from this token (khoa_core::secret).
    successor_sealed BLOB
);
-- family_id serves the cascade from token_families; expires_at serves purge_expired.
CREATE INDEX refresh_tokens_family_id ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_expires_at ON refresh_tokens (expires_at);

CREATE TABLE access_tokens (
    hash       TEXT PRIMARY KEY NOT NULL,
    client_id  TEXT NOT NULL,
    subject    TEXT NOT NULL,
    scope      TEXT NOT NULL,
    -- NULL for tokens outside any refresh family (client_credentials).
    family_id  TEXT REFERENCES token_families (id) ON DELETE CASCADE,
    issued_at  INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    -- SHA-256 of the otp_token bound to this token, if any.
    otp_hash   TEXT
);
CREATE INDEX access_tokens_expires_at ON access_tokens (expires_at);
CREATE INDEX access_tokens_family_id ON access_tokens (family_id);

CREATE TABLE signing_keys (
    kid            TEXT PRIMARY KEY NOT NULL,
    alg            TEXT NOT NULL,
    -- The private key sealed under the master key.
    private_sealed BLOB NOT NULL,
    public_jwk     TEXT NOT NULL,
    created_at     INTEGER NOT NULL,
    status         TEXT NOT NULL CHECK (status IN ('current', 'previous', 'retired'))
);
-- The backstop behind insert_first_key's NOT EXISTS: at most one key signs.
CREATE UNIQUE INDEX signing_keys_one_current ON signing_keys (status) WHERE status = 'current';

-- Partners of the encrypted dialect (seed 002).
CREATE TABLE partners (
    code       TEXT PRIMARY KEY NOT NULL,
    name       TEXT NOT NULL,
    client_id  TEXT NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE TABLE partner_keys (
    key_id       TEXT PRIMARY KEY NOT NULL,
    partner_code TEXT NOT NULL REFERENCES partners (code) ON DELETE CASCADE,
    -- The 32-byte AES key sealed under the master key.
    sealed       BLOB NOT NULL,
    created_at   INTEGER NOT NULL,
    -- NULL while current; after a rotation, the end of the overlap.
    expires_at   INTEGER
);
CREATE INDEX partner_keys_partner_code ON partner_keys (partner_code);
