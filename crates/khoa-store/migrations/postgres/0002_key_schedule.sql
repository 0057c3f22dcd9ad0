-- Signing keys get a schedule instead of a status. The key that signs at time t is the
-- published key with the greatest activates_at <= t (the later-inserted one, by seq, among
-- ties); a key is published, and its tokens accepted, while retires_at IS NULL OR
-- retires_at > t. Every node reading these rows switches keys at the same instant, with no
-- coordination. "One current key" is no longer a row property: the partial unique index goes,
-- and the store serializes key changes behind an advisory lock instead.
ALTER TABLE signing_keys
    -- When the key starts signing; published before that, from its insertion on.
    ADD COLUMN activates_at BIGINT,
    -- NULL, or when the key stops being published and accepted.
    ADD COLUMN retires_at BIGINT;
-- Keys signed with until now: activated when created. 'previous' keys stay published (as they
-- were) until the next rotation gives them an end; 'retired' ones are retired already.
UPDATE signing_keys
SET activates_at = created_at,
    retires_at = CASE WHEN status = 'retired' THEN created_at END;
ALTER TABLE signing_keys ALTER COLUMN activates_at SET NOT NULL;
DROP INDEX signing_keys_one_current;
ALTER TABLE signing_keys DROP COLUMN status;
CREATE INDEX signing_keys_activates_at ON signing_keys (activates_at);
