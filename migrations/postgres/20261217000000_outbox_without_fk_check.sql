-- The outbox's foreign key made PostgreSQL run its referential check for every outbox
-- row, inside the transaction of every state change: a look-up of the deployment by id
-- through SPI and a `FOR KEY SHARE` lock on the deployment's row, which writes a WAL
-- record of its own. A webhook pays it once per notification target. On a table whose
-- planner statistics were taken while it was small, the check's cached plan was a
-- sequential scan of deployments: bench/run's profile of the web tier found it 16% of
-- PostgreSQL's CPU (ARCHITECTURE.md, "The job store under load"; BENCHMARKS.md, item 16).
-- The guarantees stay, without a per-row check, as for deployment_logs (20261204):
-- * no event without its deployment: the trigger on deployments writes a state change's
--   events in the statement that makes the change; the one other writer (an approval
--   that changes no state) selects the deployment's row in its INSERT, in the
--   transaction that has just added the approval (whose own foreign key holds the row);
--   faseng never deletes a deployment;
-- * deleting a deployment (an administrator, with SQL) deletes its events, by the
--   trigger below, as ON DELETE CASCADE did.
ALTER TABLE outbox DROP CONSTRAINT outbox_deployment_id_fkey;

CREATE OR REPLACE FUNCTION deployments_deleted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM deployment_logs WHERE deployment_id = OLD.id;
    DELETE FROM outbox WHERE deployment_id = OLD.id;
    RETURN NULL;
END
$$;
