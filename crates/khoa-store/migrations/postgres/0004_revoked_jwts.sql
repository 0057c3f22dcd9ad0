-- RFC 7009 revocation of JWT access tokens: a JWT stays valid by signature until `exp`, so
-- validators keep this list in memory and refuse its `jti`s. An entry is useless once the
-- token has expired; purge_expired deletes it then.
CREATE TABLE revoked_jwts (
    jti        TEXT PRIMARY KEY,
    expires_at BIGINT NOT NULL,
    revoked_at BIGINT NOT NULL
);
-- Validators poll for entries added since their last look.
CREATE INDEX revoked_jwts_revoked_at ON revoked_jwts (revoked_at);
CREATE INDEX revoked_jwts_expires_at ON revoked_jwts (expires_at);
