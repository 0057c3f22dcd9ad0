-- One row that readiness rewrites while writes are failing (a full disk): a probe write about
-- the size of a token's, so that its success means a token would be stored too. SQLite only:
-- PostgreSQL reports a full disk on every write by itself and needs no probe.
CREATE TABLE readiness_probe (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    pad BLOB NOT NULL
);
