-- The job store: deployments, their logs, environment locks, webhook deliveries and the
-- notification outbox. Read crates/store/src/lib.rs for the semantics; the comments here
-- say why the schema looks the way it does.

CREATE TABLE deployments (
    id                   BIGSERIAL PRIMARY KEY,
    -- Idempotency key of the request that created the deployment (GitHub deployment id,
    -- webhook delivery id or a client key). A second create with the same key is a no-op.
    source_key           TEXT NOT NULL UNIQUE,
    -- A webhook redelivery may carry a new delivery id but the same GitHub deployment:
    -- unique when present so that it is still one deployment.
    github_deployment_id BIGINT UNIQUE,
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
    payload              JSONB NOT NULL DEFAULT '{}'::jsonb,
    -- Outbox targets ("github", "chat", ...): every state change writes one outbox row per
    -- target, from the trigger below, in the transaction of the change.
    notify               TEXT[] NOT NULL DEFAULT '{}',
    timeout_secs         BIGINT,
    created_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    started_at           TIMESTAMPTZ,
    finished_at          TIMESTAMPTZ,
    exit_code            INTEGER,
    reason               TEXT,
    worker_id            TEXT,
    lease_expires_at     TIMESTAMPTZ,
    cancel_requested_by  TEXT,
    -- Last log sequence number handed out; appenders take numbers by updating this row,
    -- which serialises concurrent appenders of one deployment.
    log_seq              BIGINT NOT NULL DEFAULT 0,
    CHECK (state <> 'running' OR (started_at IS NOT NULL AND worker_id IS NOT NULL AND lease_expires_at IS NOT NULL)),
    CHECK (state IN ('queued', 'running') OR (finished_at IS NOT NULL AND reason IS NOT NULL))
);

-- The real guarantee of "at most one running deployment per app+environment": two
-- claimers that race past the application's checks cannot both commit.
CREATE UNIQUE INDEX deployments_one_running ON deployments (app, environment) WHERE state = 'running';
-- Claim candidates (oldest first) and "is there an older queued one in this environment".
CREATE INDEX deployments_queued ON deployments (app, environment, id) WHERE state = 'queued';
CREATE INDEX deployments_queued_id ON deployments (id) WHERE state = 'queued';
-- Lease reaping.
CREATE INDEX deployments_leases ON deployments (lease_expires_at) WHERE state = 'running';
-- History pages and rollback look-ups.
CREATE INDEX deployments_app_env ON deployments (app, environment, id DESC);

CREATE TABLE deployment_logs (
    deployment_id BIGINT NOT NULL REFERENCES deployments (id) ON DELETE CASCADE,
    seq           BIGINT NOT NULL,
    stream        TEXT NOT NULL CHECK (stream IN ('stdout', 'stderr')),
    line          TEXT NOT NULL,
    at            TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (deployment_id, seq)
);

CREATE TABLE locks (
    app         TEXT NOT NULL,
    environment TEXT NOT NULL,
    holder      TEXT NOT NULL,
    reason      TEXT,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- An expired lock counts as absent in every read and is overwritten by the next lock:
    -- no sweeper has to run for it to stop counting.
    expires_at  TIMESTAMPTZ,
    PRIMARY KEY (app, environment)
);

CREATE TABLE webhook_deliveries (
    delivery_id TEXT PRIMARY KEY,
    event       TEXT NOT NULL,
    received_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Events to deliver (GitHub statuses, chat messages). Rows are events, not rendered
-- messages: the sender renders them from the deployment when it sends.
CREATE TABLE outbox (
    id            BIGSERIAL PRIMARY KEY,
    deployment_id BIGINT NOT NULL REFERENCES deployments (id) ON DELETE CASCADE,
    target        TEXT NOT NULL,
    event         TEXT NOT NULL,
    payload       JSONB NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    due_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    attempts      INTEGER NOT NULL DEFAULT 0,
    last_error    TEXT,
    delivered_at  TIMESTAMPTZ
);

CREATE INDEX outbox_pending ON outbox (target, deployment_id, id) WHERE delivered_at IS NULL;

-- Every state change writes its outbox rows in the same transaction, whatever statement
-- made it, and wakes idle claimers when work may have become claimable: a new queued
-- deployment, or a deployment that ended (the next one of its environment may go now).
CREATE FUNCTION deployments_state_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    at TIMESTAMPTZ;
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.state = OLD.state THEN
        RETURN NULL;
    END IF;
    at := CASE NEW.state
        WHEN 'queued' THEN NEW.created_at
        WHEN 'running' THEN NEW.started_at
        ELSE NEW.finished_at
    END;
    INSERT INTO outbox (deployment_id, target, event, payload, created_at, due_at)
    SELECT NEW.id, t.target, NEW.state,
           jsonb_build_object('state', NEW.state, 'reason', NEW.reason, 'exit_code', NEW.exit_code),
           COALESCE(at, now()), COALESCE(at, now())
    FROM unnest(NEW.notify) WITH ORDINALITY AS t (target, ord)
    ORDER BY t.ord;
    IF TG_OP = 'INSERT' OR NEW.state NOT IN ('queued', 'running') THEN
        PERFORM pg_notify('faseng_work', NEW.app || '/' || NEW.environment);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER deployments_state_changed
    AFTER INSERT OR UPDATE OF state ON deployments
    FOR EACH ROW EXECUTE FUNCTION deployments_state_changed();
