//! `shell` (heaven's `script`): runs `./<deploy_script>` from the checkout,
//! default `script/deploy`. The path must stay inside the checkout, even
//! through symlinks.
//!
//! A dry run (`deploy:noop`) runs the same script with `DEPLOY_NOOP=1` and
//! `DEPLOY_TASK=deploy`: the script decides what "change nothing" means for it (a
//! script that ignores the variable deploys for real, so the README says to read it).

use super::{Job, Plan};

/// The script run when the app names no `deploy_script`.
pub const DEFAULT_SCRIPT: &str = "script/deploy";

/// Plans `./<deploy_script>`; refuses a path that could leave the checkout.
pub fn plan(job: Job<'_>) -> Result<Plan, String> {
    let script = job.app.deploy_script.as_deref().unwrap_or(DEFAULT_SCRIPT);
    if script.starts_with('/') || script.starts_with('-') || script.split('/').any(|p| p == "..") {
        return Err(format!(
            "deploy_script `{script}` is outside the checkout; it must be a relative path inside the repository"
        ));
    }
    let root = job
        .checkout
        .canonicalize()
        .map_err(|e| format!("cannot read the checkout: {e}"))?;
    let path = root.join(script);
    let real = path.canonicalize().map_err(|_| {
        format!("deploy_script `{script}` does not exist in the repository at this commit")
    })?;
    if !real.starts_with(&root) {
        return Err(format!(
            "deploy_script `{script}` leads outside the checkout (through a symlink); refused"
        ));
    }
    if !real.is_file() {
        return Err(format!("deploy_script `{script}` is not a file"));
    }
    let env = if job.dry_run() {
        vec![(super::NOOP_ENV.0.to_string(), super::NOOP_ENV.1.to_string())]
    } else {
        Vec::new()
    };
    Ok(Plan::command(vec![format!("./{script}")], env))
}
