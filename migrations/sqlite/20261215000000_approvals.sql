-- no-transaction
-- Approvals (issue 18): see migrations/postgres for what and why. SQLite cannot change
-- a table's CHECK constraints, so `deployments` is rebuilt by SQLite's own procedure
-- (https://www.sqlite.org/lang_altertable.html#otheralter): foreign keys off, so that
-- dropping the old table deletes nothing that references it, then a new table, a copy,
-- the drop, the rename, the indexes (as the migrations before this one left them) and
-- triggers again, and the commit. Outside sqlx's transaction ("no-transaction") because `PRAGMA foreign_keys`
-- does nothing inside one.
PRAGMA foreign_keys = OFF;

BEGIN IMMEDIATE;

CREATE TABLE deployments_new (
    id                   INTEGER PRIMARY KEY AUTOINCREMENT,
    source_key           TEXT NOT NULL UNIQUE,
    github_deployment_id INTEGER UNIQUE,
    state                TEXT NOT NULL DEFAULT 'queued'
        CHECK (state IN ('awaiting_approval', 'queued', 'running', 'succeeded', 'failed', 'errored', 'cancelled', 'rejected')),
    requester            TEXT NOT NULL,
    app                  TEXT NOT NULL,
    environment          TEXT NOT NULL,
    repository           TEXT NOT NULL,
    git_ref              TEXT NOT NULL,
    sha                  TEXT,
    task                 TEXT NOT NULL,
    hosts                TEXT,
    provider             TEXT NOT NULL,
    payload              TEXT NOT NULL DEFAULT '{}',
    -- JSON array of outbox targets.
    notify               TEXT NOT NULL DEFAULT '[]',
    timeout_secs         INTEGER,
    created_at           TEXT NOT NULL,
    started_at           TEXT,
    finished_at          TEXT,
    exit_code            INTEGER,
    reason               TEXT,
    worker_id            TEXT,
    lease_expires_at     TEXT,
    cancel_requested_by  TEXT,
    log_seq              INTEGER NOT NULL DEFAULT 0,
    runner               TEXT,
    approvals_needed     INTEGER CHECK (approvals_needed IS NULL OR approvals_needed >= 1),
    approval_expires_at  TEXT,
    CHECK (state <> 'running' OR (started_at IS NOT NULL AND worker_id IS NOT NULL AND lease_expires_at IS NOT NULL)),
    CHECK (state IN ('awaiting_approval', 'queued', 'running') OR (finished_at IS NOT NULL AND reason IS NOT NULL)),
    CHECK (state <> 'awaiting_approval' OR (approvals_needed IS NOT NULL AND approval_expires_at IS NOT NULL))
);

INSERT INTO deployments_new (
    id, source_key, github_deployment_id, state, requester, app, environment, repository,
    git_ref, sha, task, hosts, provider, payload, notify, timeout_secs, created_at,
    started_at, finished_at, exit_code, reason, worker_id, lease_expires_at,
    cancel_requested_by, log_seq, runner)
SELECT
    id, source_key, github_deployment_id, state, requester, app, environment, repository,
    git_ref, sha, task, hosts, provider, payload, notify, timeout_secs, created_at,
    started_at, finished_at, exit_code, reason, worker_id, lease_expires_at,
    cancel_requested_by, log_seq, runner
FROM deployments;

DROP TABLE deployments;
ALTER TABLE deployments_new RENAME TO deployments;

-- As 20261213000000_dry_runs.sql left it: dry runs take no part in the one-running rule.
CREATE UNIQUE INDEX deployments_one_running ON deployments (app, environment)
    WHERE state = 'running' AND task <> 'deploy:noop';
CREATE INDEX deployments_queued ON deployments (app, environment, id) WHERE state = 'queued';
CREATE INDEX deployments_queued_id ON deployments (id) WHERE state = 'queued';
CREATE INDEX deployments_leases ON deployments (lease_expires_at) WHERE state = 'running';
CREATE INDEX deployments_app_env ON deployments (app, environment, id DESC);
CREATE INDEX deployments_awaiting ON deployments (approval_expires_at) WHERE state = 'awaiting_approval';

CREATE TRIGGER deployments_outbox_on_insert AFTER INSERT ON deployments
BEGIN
    INSERT INTO outbox (deployment_id, target, event, payload, created_at, due_at)
    SELECT NEW.id, j.value, NEW.state,
           json_object('state', NEW.state, 'reason', NEW.reason, 'exit_code', NEW.exit_code),
           NEW.created_at, NEW.created_at
    FROM json_each(NEW.notify) AS j
    ORDER BY j.key;
END;

-- A deployment approved into `queued` gets events dated now (it has no start or finish).
CREATE TRIGGER deployments_outbox_on_state_change AFTER UPDATE OF state ON deployments
WHEN NEW.state <> OLD.state
BEGIN
    INSERT INTO outbox (deployment_id, target, event, payload, created_at, due_at)
    SELECT NEW.id, j.value, NEW.state,
           json_object('state', NEW.state, 'reason', NEW.reason, 'exit_code', NEW.exit_code),
           COALESCE(CASE NEW.state WHEN 'running' THEN NEW.started_at WHEN 'queued' THEN NULL ELSE NEW.finished_at END,
                    strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
           COALESCE(CASE NEW.state WHEN 'running' THEN NEW.started_at WHEN 'queued' THEN NULL ELSE NEW.finished_at END,
                    strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
    FROM json_each(NEW.notify) AS j
    ORDER BY j.key;
END;

CREATE TABLE approvals (
    deployment_id INTEGER NOT NULL REFERENCES deployments (id) ON DELETE CASCADE,
    approver_key  TEXT NOT NULL CHECK (approver_key <> ''),
    approver      TEXT NOT NULL CHECK (approver <> ''),
    decision      TEXT NOT NULL CHECK (decision IN ('approve', 'reject')),
    reason        TEXT,
    at            TEXT NOT NULL,
    PRIMARY KEY (deployment_id, approver_key)
);

COMMIT;

PRAGMA foreign_keys = ON;
