//! The providers of DESIGN.md section 5, one file each. A command provider
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
    /// Run this argv in the checkout, with the common variables plus `env`.
    Command {
        argv: Vec<String>,
        env: Vec<(String, String)>,
    },
    /// Build on Heroku.
    Heroku(heroku::HerokuPlan),
}

/// What a provider needs to plan a job.
#[derive(Debug, Clone, Copy)]
pub struct Job<'a> {
    pub deployment: &'a Deployment,
    pub app: &'a App,
    /// The per-job checkout (empty for providers that need none).
    pub checkout: &'a Path,
    /// The commit being deployed.
    pub sha: &'a str,
}

impl Job<'_> {
    /// The task as the provider should see it (`deploy`, `deploy:migrate`).
    pub fn task(&self) -> &str {
        &self.deployment.task
    }

    pub fn git_ref(&self) -> &str {
        &self.deployment.git_ref
    }
}

/// Plans a job for its app's provider. An `Err` is the reason the deployment
/// ends `errored` without running anything.
pub fn plan(job: Job<'_>, heroku_source: impl FnOnce() -> String) -> Result<Plan, String> {
    if let Some(argv) = &job.app.command {
        return Ok(Plan::Command {
            argv: argv.clone(),
            env: Vec::new(),
        });
    }
    match job.app.provider {
        Provider::Shell => shell::plan(job),
        Provider::Fabric => fabric::plan(job),
        Provider::Capistrano => capistrano::plan(job),
        Provider::Heroku => heroku::plan(job, heroku_source()),
    }
}

/// Whether a provider works from a checkout (Heroku fetches the source itself).
pub fn needs_checkout(app: &App) -> bool {
    app.command.is_some() || app.provider != Provider::Heroku
}
