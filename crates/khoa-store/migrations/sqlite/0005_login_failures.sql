-- Failed sign-ins per username, known or not (tracking unknown names too means the lockout
-- tells an attacker nothing about which accounts exist). In the database, not in a node's
-- memory, so that every node behind the load balancer counts the same failures.
-- A success or the operator's unlock deletes the row; purge_login_failures deletes rows whose
-- last failure is long past and that are no longer locked, which bounds the table.
CREATE TABLE login_failures (
    username        TEXT PRIMARY KEY NOT NULL,
    failures        INTEGER NOT NULL,
    last_failure_at INTEGER NOT NULL,
    locked_until    INTEGER
);
CREATE INDEX login_failures_last_failure_at ON login_failures (last_failure_at);
