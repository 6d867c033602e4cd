-- A new deployment no longer NOTIFYs from inside its insert's transaction: NOTIFY takes
-- PostgreSQL's global notification lock at commit and holds it through the WAL flush, so
-- concurrent webhooks committed one at a time. The store now sends the NOTIFY after the
-- commit (crates/store/src/postgres.rs, `Announcer`). A deployment that ends still
-- NOTIFYs here: the next one of its environment may go now, whichever process ended it.
CREATE OR REPLACE FUNCTION deployments_state_changed() RETURNS trigger
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
    IF TG_OP = 'UPDATE' AND NEW.state NOT IN ('queued', 'running') THEN
        PERFORM pg_notify('faseng_work', NEW.app || '/' || NEW.environment);
    END IF;
    RETURN NULL;
END
$$;
