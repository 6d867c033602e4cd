-- Dry runs (issue 18, `deploy:noop`) change nothing, so they take no part in the rule of
-- one running deployment per app+environment: one may run beside a real deploy, and a
-- real deploy never waits for one. The rule keeps holding for every other task. The
-- claim's queries (crates/store/src/shared.rs) say the same; the literal is
-- chima_config::DRY_RUN_TASK (and chima_store::DRY_RUN_TASK).
DROP INDEX deployments_one_running;
CREATE UNIQUE INDEX deployments_one_running ON deployments (app, environment)
    WHERE state = 'running' AND task <> 'deploy:noop';
