-- A foreign key on deployment_logs made PostgreSQL run its referential check, a small
-- query, for every log line: bench/run found it most of the server's work when one
-- deploy prints a million lines (the backend storing them was the bottleneck, at about
-- 50,000 lines/s on one core). The guarantees stay, without a per-line check:
-- * no line without its deployment: append_logs takes the line numbers with
--   `UPDATE deployments ... RETURNING` in the same transaction, which fails with
--   "not found" for a missing deployment and locks the row until the lines commit;
-- * deleting a deployment deletes its lines, by the trigger below.
ALTER TABLE deployment_logs DROP CONSTRAINT deployment_logs_deployment_id_fkey;

CREATE FUNCTION deployments_deleted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM deployment_logs WHERE deployment_id = OLD.id;
    RETURN NULL;
END
$$;

CREATE TRIGGER deployments_deleted AFTER DELETE ON deployments
    FOR EACH ROW EXECUTE FUNCTION deployments_deleted();
