-- Clients' public keys for signature dialects (SNAP's X-SIGNATURE), and the signatures already
-- accepted: each is accepted once within its freshness window (replay protection).
CREATE TABLE client_keys (
    client_id TEXT NOT NULL,
    kid TEXT NOT NULL,
    alg TEXT NOT NULL,
    public_key BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (client_id, kid)
);

CREATE TABLE used_signatures (
    digest TEXT PRIMARY KEY,
    expires_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX used_signatures_expiry ON used_signatures (expires_at);
