-- khoa's first schema, PostgreSQL flavour: the SQLite schema's tables, columns and indexes with
-- native types. Timestamps are BIGINT unix seconds, scope sets and grant-type lists
-- space-separated TEXT, token hashes lowercase hex SHA-256. No token is ever stored in clear.
-- Unique constraints carry explicit names: `postgres/mod.rs` turns a violation of each into the
-- `StoreError::Conflict` name SQLite reports, so renaming one here means renaming it there.

CREATE TABLE users (
    id             TEXT PRIMARY KEY,
    username       TEXT NOT NULL CONSTRAINT users_username_key UNIQUE,
    password_hash  TEXT NOT NULL,
    disabled       BOOLEAN NOT NULL DEFAULT FALSE,
    -- NULL: the client's allowed scopes decide alone.
    allowed_scopes TEXT,
    created_at     BIGINT NOT NULL
);

CREATE TABLE clients (
    client_id        TEXT CONSTRAINT clients_pkey PRIMARY KEY,
    name             TEXT NOT NULL,
    -- NULL: a public client.
    secret_hash      TEXT,
    allowed_scopes   TEXT NOT NULL,
    default_scopes   TEXT NOT NULL,
    grant_types      TEXT NOT NULL,
    access_format    TEXT NOT NULL,
    access_ttl       BIGINT NOT NULL,
    refresh_issuance TEXT NOT NULL,
    refresh_ttl      BIGINT NOT NULL,
    session_lifetime BIGINT NOT NULL,
    reuse_window     BIGINT NOT NULL,
    refresh_format   TEXT NOT NULL DEFAULT 'opaque',
    -- TRUE: every access token gets a bound otp_token (seed 000).
    otp              BOOLEAN NOT NULL DEFAULT FALSE,
    disabled         BOOLEAN NOT NULL DEFAULT FALSE,
    created_at       BIGINT NOT NULL
);

CREATE TABLE token_families (
    id                 TEXT PRIMARY KEY,
    client_id          TEXT NOT NULL,
    subject            TEXT NOT NULL,
    scope              TEXT NOT NULL,
    created_at         BIGINT NOT NULL,
    session_expires_at BIGINT NOT NULL,
    revoked_at         BIGINT
);
-- purge_expired: families past their session end.
CREATE INDEX token_families_session_expires_at ON token_families (session_expires_at);

CREATE TABLE refresh_tokens (
    hash             TEXT PRIMARY KEY,
    family_id        TEXT NOT NULL REFERENCES token_families (id) ON DELETE CASCADE,
    issued_at        BIGINT NOT NULL,
    expires_at       BIGINT NOT NULL,
    used_at          BIGINT,
    successor_hash   TEXT,
    -- The successor sealed under a key derived from this token (khoa_core::secret).
    successor_sealed BYTEA
);
-- family_id serves the cascade from token_families; expires_at serves purge_expired.
CREATE INDEX refresh_tokens_family_id ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_expires_at ON refresh_tokens (expires_at);

CREATE TABLE access_tokens (
    hash       TEXT PRIMARY KEY,
    client_id  TEXT NOT NULL,
    subject    TEXT NOT NULL,
    scope      TEXT NOT NULL,
    -- NULL for tokens outside any refresh family (client_credentials).
    family_id  TEXT REFERENCES token_families (id) ON DELETE CASCADE,
    issued_at  BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    -- SHA-256 of the otp_token bound to this token, if any.
    otp_hash   TEXT
);
CREATE INDEX access_tokens_expires_at ON access_tokens (expires_at);
CREATE INDEX access_tokens_family_id ON access_tokens (family_id);

CREATE TABLE signing_keys (
    kid            TEXT CONSTRAINT signing_keys_pkey PRIMARY KEY,
    -- Insertion order: breaks ties between keys created in the same second (SQLite's rowid).
    seq            BIGINT GENERATED ALWAYS AS IDENTITY,
    alg            TEXT NOT NULL,
    -- The private key sealed under the master key.
    private_sealed BYTEA NOT NULL,
    public_jwk     TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    status         TEXT NOT NULL CHECK (status IN ('current', 'previous', 'retired'))
);
-- At most one key signs. insert_first_key names this index as its ON CONFLICT target, so that
-- nodes starting together settle on one key without an error.
CREATE UNIQUE INDEX signing_keys_one_current ON signing_keys (status) WHERE status = 'current';

-- Partners of the encrypted dialect (seed 002).
CREATE TABLE partners (
    code       TEXT CONSTRAINT partners_pkey PRIMARY KEY,
    name       TEXT NOT NULL,
    client_id  TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE partner_keys (
    key_id       TEXT CONSTRAINT partner_keys_pkey PRIMARY KEY,
    -- Insertion order: breaks ties between keys created in the same second (SQLite's rowid).
    seq          BIGINT GENERATED ALWAYS AS IDENTITY,
    partner_code TEXT NOT NULL REFERENCES partners (code) ON DELETE CASCADE,
    -- The 32-byte AES key sealed under the master key.
    sealed       BYTEA NOT NULL,
    created_at   BIGINT NOT NULL,
    -- NULL while current; after a rotation, the end of the overlap.
    expires_at   BIGINT
);
CREATE INDEX partner_keys_partner_code ON partner_keys (partner_code);
