-- The audit trail: who did what, when, never with a secret (detail is a JSON object of ids,
-- names and token hash prefixes). `khoa audit list` filters on subject, client, kind and a
-- time range and lists newest first; the maintenance task purges rows past the retention.
CREATE TABLE audit_events (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    at        INTEGER NOT NULL,
    kind      TEXT NOT NULL,
    subject   TEXT,
    client_id TEXT,
    detail    TEXT NOT NULL DEFAULT '{}',
    node      TEXT
);
-- Newest first, and the purge by age.
CREATE INDEX audit_events_at ON audit_events (at, id);
CREATE INDEX audit_events_subject ON audit_events (subject, at);
CREATE INDEX audit_events_client ON audit_events (client_id, at);
CREATE INDEX audit_events_kind ON audit_events (kind, at);
