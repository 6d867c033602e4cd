-- The job store on SQLite: the same tables and rules as migrations/postgres, in SQLite's
-- dialect. Timestamps are TEXT in one fixed-width UTC format, the one of SQLite's own
-- strftime('%Y-%m-%dT%H:%M:%fZ', 'now') (milliseconds), so that comparing the text
-- compares the instants; "now" is read by the statements themselves, after they hold the
-- write lock. Log line times keep the caller's microseconds (they are never compared).

CREATE TABLE deployments (
    id                   INTEGER PRIMARY KEY AUTOINCREMENT,
    source_key           TEXT NOT NULL UNIQUE,
    github_deployment_id INTEGER UNIQUE,
    state                TEXT NOT NULL DEFAULT 'queued'
        CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'errored', 'cancelled')),
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
    CHECK (state <> 'running' OR (started_at IS NOT NULL AND worker_id IS NOT NULL AND lease_expires_at IS NOT NULL)),
    CHECK (state IN ('queued', 'running') OR (finished_at IS NOT NULL AND reason IS NOT NULL))
);

CREATE UNIQUE INDEX deployments_one_running ON deployments (app, environment) WHERE state = 'running';
CREATE INDEX deployments_queued ON deployments (app, environment, id) WHERE state = 'queued';
CREATE INDEX deployments_queued_id ON deployments (id) WHERE state = 'queued';
CREATE INDEX deployments_leases ON deployments (lease_expires_at) WHERE state = 'running';
CREATE INDEX deployments_app_env ON deployments (app, environment, id DESC);

CREATE TABLE deployment_logs (
    deployment_id INTEGER NOT NULL REFERENCES deployments (id) ON DELETE CASCADE,
    seq           INTEGER NOT NULL,
    stream        TEXT NOT NULL CHECK (stream IN ('stdout', 'stderr')),
    line          TEXT NOT NULL,
    at            TEXT NOT NULL,
    PRIMARY KEY (deployment_id, seq)
) WITHOUT ROWID;

CREATE TABLE locks (
    app         TEXT NOT NULL,
    environment TEXT NOT NULL,
    holder      TEXT NOT NULL,
    reason      TEXT,
    created_at  TEXT NOT NULL,
    expires_at  TEXT,
    PRIMARY KEY (app, environment)
);

CREATE TABLE webhook_deliveries (
    delivery_id TEXT PRIMARY KEY,
    event       TEXT NOT NULL,
    received_at TEXT NOT NULL
);

CREATE TABLE outbox (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    deployment_id INTEGER NOT NULL REFERENCES deployments (id) ON DELETE CASCADE,
    target        TEXT NOT NULL,
    event         TEXT NOT NULL,
    payload       TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    due_at        TEXT NOT NULL,
    attempts      INTEGER NOT NULL DEFAULT 0,
    last_error    TEXT,
    delivered_at  TEXT
);

CREATE INDEX outbox_pending ON outbox (target, deployment_id, id) WHERE delivered_at IS NULL;

-- Every state change writes its outbox rows in the statement that makes it (so in its
-- transaction), whatever code path made it.
CREATE TRIGGER deployments_outbox_on_insert AFTER INSERT ON deployments
BEGIN
    INSERT INTO outbox (deployment_id, target, event, payload, created_at, due_at)
    SELECT NEW.id, j.value, NEW.state,
           json_object('state', NEW.state, 'reason', NEW.reason, 'exit_code', NEW.exit_code),
           NEW.created_at, NEW.created_at
    FROM json_each(NEW.notify) AS j
    ORDER BY j.key;
END;

CREATE TRIGGER deployments_outbox_on_state_change AFTER UPDATE OF state ON deployments
WHEN NEW.state <> OLD.state
BEGIN
    INSERT INTO outbox (deployment_id, target, event, payload, created_at, due_at)
    SELECT NEW.id, j.value, NEW.state,
           json_object('state', NEW.state, 'reason', NEW.reason, 'exit_code', NEW.exit_code),
           CASE NEW.state WHEN 'running' THEN NEW.started_at ELSE NEW.finished_at END,
           CASE NEW.state WHEN 'running' THEN NEW.started_at ELSE NEW.finished_at END
    FROM json_each(NEW.notify) AS j
    ORDER BY j.key;
END;
