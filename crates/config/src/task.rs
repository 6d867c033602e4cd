//! Tasks with a meaning of their own, shared by chima, faseng and the engine so
//! that every policy (approvals, windows, freezes, locks, rollback, auto-deploy)
//! asks the same question the same way.

/// The dry-run task, branch-deploy's `.noop`: `deploy:noop <app> to <env>` runs the
/// provider's dry run (Capistrano `--dry-run`, Fabric 2+ `--dry`, scripts with
/// `DEPLOY_NOOP=1`). It changes nothing, so it needs no approval, passes windows and
/// freezes, takes no lock, and never counts as deployed.
pub const DRY_RUN_TASK: &str = "deploy:noop";

/// Whether `task` is the dry run ([`DRY_RUN_TASK`]).
pub fn is_dry_run(task: &str) -> bool {
    task == DRY_RUN_TASK
}
