//! The providers (ARCHITECTURE.md, "Providers"), one file or folder each. A command provider
//! turns a job into an argv and extra environment ([`Plan::Command`]); the
//! Heroku provider talks to the Platform API instead ([`Plan::Heroku`]).

pub mod capistrano;
pub mod fabric;
pub mod heroku;
pub mod shell;

use std::path::Path;

use chima_config::{App, Provider};
use chima_store::Deployment;

/// What the engine will do for one job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Run this argv in the checkout, with the common variables plus `env`, after the
    /// `setup` steps (each must succeed).
    Command {
        /// The program and its arguments; run directly, never through a shell.
        argv: Vec<String>,
        /// Variables the provider adds (`DEPLOY_ENV`, `BRANCH`, ...).
        env: Vec<(String, String)>,
        /// Steps to run first, in order.
        setup: Vec<Setup>,
    },
    /// Build on Heroku.
    Heroku(heroku::HerokuPlan),
}

impl Plan {
    /// A command with no setup.
    pub fn command(argv: Vec<String>, env: Vec<(String, String)>) -> Plan {
        Plan::Command {
            argv,
            env,
            setup: Vec::new(),
        }
    }
}

/// A step before the command (`bundle install`): its argvs are tried in order until
/// one exits 0; when none does, the deployment fails with the last one's error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setup {
    /// What the step is, as the log names it (`bundle install`).
    pub what: &'static str,
    /// The argvs to try, in order.
    pub attempts: Vec<Vec<String>>,
}

/// What a provider needs to plan a job.
#[derive(Debug, Clone, Copy)]
pub struct Job<'a> {
    /// The deployment to run.
    pub deployment: &'a Deployment,
    /// Its app, from this process's app.json (never from the payload).
    pub app: &'a App,
    /// The per-job checkout (empty for providers that need none).
    pub checkout: &'a Path,
    /// The commit being deployed.
    pub sha: &'a str,
    /// The Fabric found, for `fabric` apps.
    pub fabric: Option<&'a fabric::FabricInfo>,
}

impl Job<'_> {
    /// The task as the provider should see it (`deploy`, `deploy:migrate`). A dry run
    /// (`deploy:noop`) is the `deploy` task run with each tool's dry-run switch, so that
    /// a deploy script or fabfile needs no task of its own for it ([`Job::dry_run`]).
    pub fn task(&self) -> &str {
        if self.dry_run() {
            "deploy"
        } else {
            &self.deployment.task
        }
    }

    /// Whether this is a dry run (`deploy:noop`, issue 18): each provider asks its tool
    /// for its dry run (Capistrano `--dry-run`, Fabric 2+ `--dry`, scripts and an
    /// app's `command` get [`NOOP_ENV`]`=1`) or refuses (Fabric 1, Heroku).
    pub fn dry_run(&self) -> bool {
        chima_config::is_dry_run(&self.deployment.task)
    }

    /// The ref as the requester wrote it (`BRANCH`, `--branch-name`).
    pub fn git_ref(&self) -> &str {
        &self.deployment.git_ref
    }
}

/// The variable every provider of a dry run gets, `DEPLOY_NOOP=1`: what a script (or
/// an app's `command`) reads to change nothing; Capistrano and Fabric get it too,
/// besides their own switch, for the tasks they run locally.
pub const NOOP_ENV: (&str, &str) = ("DEPLOY_NOOP", "1");

/// Plans a job for its app's provider. An `Err` is the reason the deployment
/// ends `errored` without running anything.
pub fn plan(job: Job<'_>, heroku_source: impl FnOnce() -> String) -> Result<Plan, String> {
    if let Some(argv) = &job.app.command {
        // An app's own command has no dry-run switch faseng knows: it gets
        // `DEPLOY_NOOP=1` and `{task}` is `deploy`, as a deploy script does.
        let env = if job.dry_run() {
            vec![(NOOP_ENV.0.to_string(), NOOP_ENV.1.to_string())]
        } else {
            Vec::new()
        };
        return Ok(Plan::command(
            argv.iter().map(|a| fill(a, &job)).collect(),
            env,
        ));
    }
    match job.app.provider {
        Provider::Shell => shell::plan(job),
        Provider::Fabric => match job.fabric {
            Some(info) => fabric::plan(job, info),
            None => Err("the Fabric version is unknown; set `fabric_version` in app.json".into()),
        },
        Provider::Capistrano => capistrano::plan(job),
        Provider::Heroku => heroku::plan(job, heroku_source()),
    }
}

/// `arg` with each placeholder (`{ref}`, `{sha}`, `{env}`, `{hosts}`, `{task}`,
/// `{app}`) replaced by its value, in one pass: a value is never read again for
/// placeholders, and the argument stays one argument, whatever the value holds.
pub fn fill(arg: &str, job: &Job<'_>) -> String {
    let value = |word: &str| -> Option<String> {
        Some(match word {
            "ref" => job.git_ref().to_string(),
            "sha" => job.sha.to_string(),
            "env" => job.deployment.environment.clone(),
            "hosts" => job.deployment.hosts.clone().unwrap_or_default(),
            "task" => job.task().to_string(),
            "app" => job.deployment.app.clone(),
            _ => return None,
        })
    };
    let mut out = String::with_capacity(arg.len());
    let mut rest = arg;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match after
            .find('}')
            .and_then(|close| Some((close, value(&after[..close])?)))
        {
            Some((close, v)) => {
                out.push_str(&v);
                rest = &after[close + 1..];
            }
            None => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Whether a provider works from a checkout (Heroku fetches the source itself).
pub fn needs_checkout(app: &App) -> bool {
    app.command.is_some() || app.provider != Provider::Heroku
}

#[cfg(test)]
mod tests {
    /// The store spells the dry-run task itself (it depends on no other crate of the
    /// workspace); its SQL must mean the task chima and faseng create.
    #[test]
    fn the_store_and_the_config_name_the_same_dry_run_task() {
        assert_eq!(chima_store::DRY_RUN_TASK, chima_config::DRY_RUN_TASK);
    }
}
