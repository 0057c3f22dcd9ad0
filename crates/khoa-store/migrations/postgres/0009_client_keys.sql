-- Clients' public keys for signature dialects (SNAP's X-SIGNATURE), and the signatures already
-- accepted: each is accepted once within its freshness window (replay protection).
CREATE TABLE client_keys (
    client_id TEXT NOT NULL,
    kid TEXT NOT NULL,
    alg TEXT NOT NULL,
    public_key BYTEA NOT NULL,
    created_at BIGINT NOT NULL,
    seq BIGSERIAL,
    CONSTRAINT client_keys_pkey PRIMARY KEY (client_id, kid)
);

CREATE TABLE used_signatures (
    digest TEXT PRIMARY KEY,
    expires_at BIGINT NOT NULL
);
CREATE INDEX used_signatures_expiry ON used_signatures (expires_at);
