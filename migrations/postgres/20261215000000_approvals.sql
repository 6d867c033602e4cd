-- Approvals (issue 18): a deployment to an environment with `approvals` in app.json
-- starts `awaiting_approval`, which no claim takes, until enough different approvers
-- approve (it becomes `queued`); a rejection or the expiry ends it `rejected`.

-- The state checks of the first migration, with the two new states. Their names were
-- PostgreSQL's defaults, so they are found by what they say rather than by name.
DO $$
DECLARE
    c record;
BEGIN
    FOR c IN
        SELECT conname FROM pg_constraint
        WHERE conrelid = 'deployments'::regclass AND contype = 'c'
          AND pg_get_constraintdef(oid) LIKE '%state%'
    LOOP
        EXECUTE format('ALTER TABLE deployments DROP CONSTRAINT %I', c.conname);
    END LOOP;
END
$$;

ALTER TABLE deployments
    ADD COLUMN approvals_needed INTEGER CHECK (approvals_needed IS NULL OR approvals_needed >= 1),
    ADD COLUMN approval_expires_at TIMESTAMPTZ,
    ADD CONSTRAINT deployments_state_known CHECK (state IN (
        'awaiting_approval', 'queued', 'running', 'succeeded', 'failed', 'errored', 'cancelled', 'rejected')),
    ADD CONSTRAINT deployments_running_holds_a_lease CHECK (
        state <> 'running' OR (started_at IS NOT NULL AND worker_id IS NOT NULL AND lease_expires_at IS NOT NULL)),
    ADD CONSTRAINT deployments_ended_with_a_reason CHECK (
        state IN ('awaiting_approval', 'queued', 'running') OR (finished_at IS NOT NULL AND reason IS NOT NULL)),
    ADD CONSTRAINT deployments_awaiting_has_an_expiry CHECK (
        state <> 'awaiting_approval' OR (approvals_needed IS NOT NULL AND approval_expires_at IS NOT NULL));

-- Expiry: every claim looks for lapsed approvals through this.
CREATE INDEX deployments_awaiting ON deployments (approval_expires_at) WHERE state = 'awaiting_approval';

-- One decision per approver (verified identity key) and deployment: a second click
-- finds the first.
CREATE TABLE approvals (
    deployment_id BIGINT NOT NULL REFERENCES deployments (id) ON DELETE CASCADE,
    approver_key  TEXT NOT NULL CHECK (approver_key <> ''),
    approver      TEXT NOT NULL CHECK (approver <> ''),
    decision      TEXT NOT NULL CHECK (decision IN ('approve', 'reject')),
    reason        TEXT,
    at            TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (deployment_id, approver_key)
);

-- The outbox trigger, knowing the new states: a deployment approved into `queued`
-- long after its creation gets events dated now, not at its creation.
CREATE OR REPLACE FUNCTION deployments_state_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    at TIMESTAMPTZ;
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.state = OLD.state THEN
        RETURN NULL;
    END IF;
    at := CASE
        WHEN TG_OP = 'INSERT' THEN NEW.created_at
        WHEN NEW.state = 'queued' THEN clock_timestamp()
        WHEN NEW.state = 'running' THEN NEW.started_at
        ELSE NEW.finished_at
    END;
    INSERT INTO outbox (deployment_id, target, event, payload, created_at, due_at)
    SELECT NEW.id, t.target, NEW.state,
           jsonb_build_object('state', NEW.state, 'reason', NEW.reason, 'exit_code', NEW.exit_code),
           COALESCE(at, now()), COALESCE(at, now())
    FROM unnest(NEW.notify) WITH ORDINALITY AS t (target, ord)
    ORDER BY t.ord;
    IF TG_OP = 'UPDATE' AND NEW.state NOT IN ('queued', 'running') THEN
        PERFORM pg_notify('faseng_work', NEW.app || '/' || NEW.environment);
    END IF;
    RETURN NULL;
END
$$;
