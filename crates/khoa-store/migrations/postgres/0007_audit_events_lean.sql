-- As on SQLite: no (kind, at) index. Every issued token writes a row, so each index is paid at
-- the token endpoints' rate; `khoa audit list --kind` walks the (at, id) index newest first and
-- filters instead.
DROP INDEX audit_events_kind;
