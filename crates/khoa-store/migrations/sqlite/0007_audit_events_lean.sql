-- A leaner audit trail: every issued token writes a row, so each index and each bookkeeping
-- write per row is paid at the token endpoints' rate (about 1 % of a JWT issuance each, counted
-- with callgrind).
-- * No AUTOINCREMENT: it updates sqlite_sequence on every insert only to promise that the id of
--   a deleted newest row is never reused; the purge deletes the oldest rows, so plain rowids
--   (max + 1) already grow with time.
-- * No (kind, at) index: `khoa audit list --kind` walks the (at, id) index newest first and
--   filters, which is quick for the kinds that are frequent and bounded by the retention for
--   the rare ones.
CREATE TABLE audit_events_lean (
    id        INTEGER PRIMARY KEY,
    at        INTEGER NOT NULL,
    kind      TEXT NOT NULL,
    subject   TEXT,
    client_id TEXT,
    detail    TEXT NOT NULL DEFAULT '{}',
    node      TEXT
);
INSERT INTO audit_events_lean (id, at, kind, subject, client_id, detail, node)
    SELECT id, at, kind, subject, client_id, detail, node FROM audit_events;
DROP TABLE audit_events;
ALTER TABLE audit_events_lean RENAME TO audit_events;
CREATE INDEX audit_events_at ON audit_events (at, id);
CREATE INDEX audit_events_subject ON audit_events (subject, at);
CREATE INDEX audit_events_client ON audit_events (client_id, at);
