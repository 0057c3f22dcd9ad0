-- Signing keys get a schedule instead of a status. The key that signs at time t is the
-- published key with the greatest activates_at <= t (the later-inserted one among ties); a key
-- is published, and its tokens accepted, while retires_at IS NULL OR retires_at > t. Every
-- node reading these rows switches keys at the same instant, with no coordination.
--
-- SQLite cannot drop a CHECK constraint or a column that an index uses: the table is rebuilt.
-- Rows keep their order (rowid breaks ties between keys activating in the same second).
CREATE TABLE signing_keys_scheduled (
    kid            TEXT PRIMARY KEY NOT NULL,
    alg            TEXT NOT NULL,
    -- The private key sealed under the master key.
    private_sealed BLOB NOT NULL,
    public_jwk     TEXT NOT NULL,
    created_at     INTEGER NOT NULL,
    -- When the key starts signing; published before that, from its insertion on.
    activates_at   INTEGER NOT NULL,
    -- NULL, or when the key stops being published and accepted.
    retires_at     INTEGER
);
-- Keys signed with until now: activated when created. 'previous' keys stay published (as they
-- were) until the next rotation gives them an end; 'retired' ones are retired already.
INSERT INTO signing_keys_scheduled
    (kid, alg, private_sealed, public_jwk, created_at, activates_at, retires_at)
SELECT kid, alg, private_sealed, public_jwk, created_at, created_at,
       CASE status WHEN 'retired' THEN created_at END
FROM signing_keys
ORDER BY created_at, rowid;
DROP TABLE signing_keys;
ALTER TABLE signing_keys_scheduled RENAME TO signing_keys;
CREATE INDEX signing_keys_activates_at ON signing_keys (activates_at);
