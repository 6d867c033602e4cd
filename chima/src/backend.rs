//! What a command needs from the world, whichever mode chima runs in: one
//! trait, two implementations. [`crate::local::Local`] keeps deployments in a
//! store and runs them with the engine in this process; [`crate::remote::Remote`]
//! creates GitHub Deployments and asks faseng's API for the rest. Both return
//! data: what to say is [`crate::replies`]'s, what to do is [`crate::bot`]'s.

use std::sync::Arc;

use chima_api_types::{FreezeRequest, LockRequest, PauseRequest};
use chima_command::Command;
use chima_config::{App, Apps, DeploymentRequest};
use chima_engine::ops::{Cancelled, NoRollback, Rollback};
use chima_github::{CiState, CreateOutcome, DeploymentSummary, GitHubError};
use chima_payload::{DeploymentPayload, Identity};
use chima_store::{
    AutoDeploy, AutoDeployPause, Decided, Decision, Deployment, Freeze, Lock, LockResult, Store,
};

use crate::bot::{Chat, Say};
pub use crate::local::ChatOut;
use crate::local::Local;
use crate::remote::Remote;
use crate::settings::Settings;

/// What creating a deployment did.
pub enum Created {
    /// Queued in the local store, for the engine here.
    Queued(Box<Deployment>),
    /// GitHub's answer to creating the deployment of `app`/`git_ref` to `environment`.
    OnGitHub {
        app: String,
        environment: String,
        git_ref: String,
        /// The task (`deploy:noop` is a dry run, said so in the reply).
        task: String,
        outcome: CreateOutcome,
    },
}

/// Recent deployments of an app.
pub enum History {
    /// From a store (the local one, or faseng's), with the approvals recorded for
    /// them (the embedded store's; faseng's page shows its own).
    Stored(Vec<Deployment>, Vec<chima_store::Approval>),
    /// From GitHub's list of deployments.
    GitHub(Vec<DeploymentSummary>),
}

/// A GitHub call that failed: the reply names the repository and what to fix.
#[derive(Debug)]
pub struct GitHubFailed {
    pub repo: String,
    pub error: GitHubError,
}

impl std::fmt::Display for GitHubFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GitHub failed for {}: {}", self.repo, self.error)
    }
}

impl std::error::Error for GitHubFailed {}

/// What a rollback would deploy, or why there is none.
pub type RollbackTo = Result<Rollback, NoRollback>;

/// Auto-deploy's pause and last shipment in an environment.
pub type AutoDeployNow = (Option<AutoDeployPause>, Option<AutoDeploy>);

/// What the auto-deploy switch answers: the pause made or lifted, if any.
pub type Switched = anyhow::Result<Option<AutoDeployPause>>;

/// What an approve or reject did, or the refusal to say to the person who asked.
pub type DecideAnswer = anyhow::Result<Result<Decided, String>>;

/// Everything a command needs from the world. `app` and `env` are the names
/// app.json resolved to.
#[async_trait::async_trait]
pub trait Backend: Send + Sync {
    /// The mode, in words, for the terminal's greeting.
    fn mode(&self) -> &'static str;

    /// The reply when this backend cannot run `command` at all; `None` when it can.
    fn unavailable(&self, command: &Command) -> Option<String>;

    /// Creates the deployment `request` describes.
    async fn create(
        &self,
        request: &DeploymentRequest,
        payload: DeploymentPayload,
        chat: &Chat,
    ) -> anyhow::Result<Created>;

    /// Deploys `target`'s commit again, for the user in `chat` (a rollback).
    async fn redeploy(
        &self,
        apps: &Apps,
        target: &Deployment,
        chat: &Chat,
    ) -> anyhow::Result<Created>;

    /// Says a queued deployment's news and log as they come, until it ends; `None`
    /// where deployments run elsewhere.
    async fn follow(&self, id: i64, to: &Say) -> anyhow::Result<Option<Deployment>>;

    /// Recent deployments of `app`, in `env` or everywhere.
    async fn history(&self, app: &App, env: Option<&str>) -> anyhow::Result<History>;

    /// The lock on app+environment, if any.
    async fn lock_of(&self, app: &str, env: &str) -> anyhow::Result<Option<Lock>>;

    /// Locks app+environment (the request is faseng's API's, in both modes).
    async fn lock(&self, app: &str, env: &str, ask: &LockRequest) -> anyhow::Result<LockResult>;

    /// Lifts the lock: the one lifted, if any.
    async fn unlock(&self, app: &str, env: &str) -> anyhow::Result<Option<Lock>>;

    /// Every freeze in force (none known in GitHub mode without faseng's API: faseng
    /// still refuses what they cover when it runs).
    async fn freezes(&self) -> anyhow::Result<Vec<Freeze>>;

    /// Freezes app+environment (either may be `*`), replacing a freeze of that scope.
    async fn freeze(&self, app: &str, env: &str, ask: &FreezeRequest) -> anyhow::Result<Freeze>;

    /// Lifts the freeze of app (or `*`) in `env` (that scope), or in every environment
    /// when `None`: those lifted.
    async fn unfreeze(&self, app: &str, env: Option<&str>) -> anyhow::Result<Vec<Freeze>>;

    /// Cancels what runs or waits in app+environment.
    async fn cancel(&self, app: &str, env: &str, by: &str) -> anyhow::Result<Cancelled>;

    /// What a rollback of app+environment would deploy, or why there is none.
    async fn rollback_target(&self, app: &str, env: &str) -> anyhow::Result<RollbackTo>;

    /// The auto-deploy switch: `off` pauses auto-deploy of app+environment (the
    /// answer is the new pause), `None` resumes it (the answer is the pause lifted).
    async fn set_autodeploy(&self, app: &str, env: &str, off: Option<&PauseRequest>) -> Switched;

    /// Records `who`'s approval or rejection of deployment `id`, after the checks of
    /// the app.json that decides (this process's embedded; faseng's in GitHub mode).
    async fn decide(
        &self,
        id: i64,
        who: &Identity,
        decision: Decision,
        reason: Option<&str>,
    ) -> DecideAnswer;

    /// Auto-deploy's pause and last shipment in app+environment.
    async fn autodeploy_state(&self, app: &str, env: &str) -> anyhow::Result<AutoDeployNow>;

    /// The CI state of `git_ref` (the default branch when `None`): the ref and state.
    async fn ci_status(
        &self,
        app: &App,
        git_ref: Option<String>,
    ) -> anyhow::Result<(String, CiState)>;

    /// Stops what runs in this process, letting running deployments finish.
    async fn stop(&self) {}
}

/// The backend the settings ask for: remote (GitHub, and faseng's API when
/// FASENG_URL is set) with GitHub credentials, else local. For the local one,
/// also its store, whose chat outbox the transport may deliver.
pub async fn open(
    settings: &Settings,
    apps: Arc<Apps>,
    chat: ChatOut,
) -> anyhow::Result<(Box<dyn Backend>, Option<Arc<dyn Store>>)> {
    if let Some(gh) = settings.github()? {
        let remote = Remote {
            gh,
            faseng: settings.faseng()?,
            signing_key: settings.signing_key(),
        };
        return Ok((Box::new(remote), None));
    }
    let local = Local::start(
        apps,
        &settings.deploy.apps,
        &settings.deploy.database_url,
        settings.workers,
        settings.lease(),
        chat,
    )
    .await?;
    let store = local.store.clone();
    Ok((Box::new(local), Some(store)))
}
