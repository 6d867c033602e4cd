//! The remote backend: a deploy is a GitHub Deployment (hubot-deploy's body),
//! which faseng receives by webhook and runs; locks, cancel, rollback targets,
//! history and auto-deploy pauses are faseng's, through its API.

use anyhow::Context;
use chima_api_types::{
    CancelAnswer, ChatRouteRequest, DecisionAnswer, DecisionRequest, FreezeRequest, LockAnswer,
    LockRequest, NoRollbackWhy, PauseRequest, UnlockAnswer,
};
use chima_command::Command;
use chima_config::{App, Apps, DeploymentRequest};
use chima_engine::ops::{Cancelled, NoRollback, Rollback};
use chima_github::{CiState, CreateOutcome, DeploymentBody, GitHub, GitHubError, RequestId};
use chima_payload::{ChimaRequest, DeploymentPayload, SigningKey};
use chima_store::{Deployment, Freeze, Lock, LockResult};

use crate::backend::{
    AutoDeployNow, Backend, Created, DecideAnswer, GitHubFailed, History, RollbackTo, Switched,
};
use crate::bot::{Chat, Say};
use crate::faseng_api::FasengApi;
use crate::replies;

pub struct Remote {
    pub gh: GitHub,
    /// faseng's API, for locks, cancel, rollback and history.
    pub faseng: Option<FasengApi>,
    /// Signs the request chima puts in each deployment, so that faseng knows which
    /// chat user asked (CHIMA_SIGNING_KEY, or derived from FASENG_API_TOKEN). Without
    /// it deployments count as chima's GitHub login only.
    pub signing_key: Option<SigningKey>,
}

fn failed(repo: &str, error: GitHubError) -> anyhow::Error {
    GitHubFailed {
        repo: repo.to_string(),
        error,
    }
    .into()
}

impl Remote {
    fn api(&self) -> anyhow::Result<&FasengApi> {
        self.faseng.as_ref().context("FASENG_URL is not set")
    }

    /// The default branch of `repo`.
    async fn default_branch(&self, repo: &str) -> anyhow::Result<String> {
        self.gh
            .default_branch(repo)
            .await
            .map_err(|e| failed(repo, e))
    }

    /// Tells faseng where deployment `id`'s messages go while the slash command's
    /// `response_url` lasts. Never in the deployment's payload: whoever can read the
    /// repository can read payloads, and the URL posts into private channels and DMs.
    async fn route_to_response_url(&self, id: i64, chat: &Chat) {
        let Some(url) = &chat.response_url else {
            return;
        };
        let Some(api) = &self.faseng else {
            tracing::warn!(
                deployment = id,
                "FASENG_URL is not set: faseng cannot be given the slash command's response_url, so the deployment's messages go to the app's notify_room"
            );
            return;
        };
        let body = ChatRouteRequest {
            response_url: url.clone(),
            expires_in_secs: i64::try_from(crate::bot::RESPONSE_URL_LIFETIME.as_secs())
                .unwrap_or(i64::MAX),
            uses_left: chat.route_uses_left(),
        };
        if let Err(e) = api.set_chat_route(&format!("github:{id}"), &body).await {
            tracing::warn!(deployment = id, error = %format!("{e:#}"), "faseng did not take the slash command's response_url: the deployment's messages go to the app's notify_room");
        }
    }

    /// A forced deployment of `sha`, as the redeployed deployment was made.
    fn redeploy_request(
        apps: &Apps,
        d: &Deployment,
        sha: &str,
    ) -> anyhow::Result<DeploymentRequest> {
        let app = apps.app(&d.app).map_err(|r| anyhow::anyhow!("{r}"))?;
        Ok(DeploymentRequest {
            app: app.name.clone(),
            repository: app.repository.clone(),
            task: d.task.clone(),
            git_ref: Some(sha.to_string()),
            environment: d.environment.clone(),
            hosts: d.hosts.clone(),
            yubikey: None,
            force: true,
            auto_merge: false,
            required_contexts: Some(Vec::new()),
            production_environment: app.is_production(&d.environment),
            transient_environment: None,
            config: app.public_config(),
            emergency: None,
        })
    }
}

#[async_trait::async_trait]
impl Backend for Remote {
    fn mode(&self) -> &'static str {
        "GitHub mode: deployments are created on GitHub for faseng to run"
    }

    fn unavailable(&self, command: &Command) -> Option<String> {
        let needs_faseng = matches!(
            command,
            Command::AutoDeploy { .. }
                | Command::Where { .. }
                | Command::Lock { .. }
                | Command::Unlock { .. }
                | Command::Cancel { .. }
                | Command::Rollback { .. }
                | Command::Freeze { .. }
                | Command::Unfreeze { .. }
                | Command::Approve { .. }
                | Command::Reject { .. }
        );
        (needs_faseng && self.faseng.is_none()).then(|| replies::needs_faseng(command.name()))
    }

    async fn create(
        &self,
        request: &DeploymentRequest,
        mut payload: DeploymentPayload,
        chat: &Chat,
    ) -> anyhow::Result<Created> {
        let repo = &request.repository;
        let git_ref = match &request.git_ref {
            Some(r) => r.clone(),
            None => self.default_branch(repo).await?,
        };
        // Signed now that the ref is known: faseng checks that the request names this
        // deployment's app, environment, ref and task. Its nonce is also the request's
        // id on GitHub: when the answer to the create is lost, the deployment carrying
        // it is this request's, and is adopted instead of creating a second one.
        let nonce = chima_payload::new_nonce();
        let request_id = match &self.signing_key {
            Some(_) => RequestId::nonce(&nonce),
            // Nothing unique to carry without a key (the payload has no field for
            // it): a deployment with this exact payload, made within a minute, is
            // taken for this request's.
            None => RequestId::SamePayload,
        };
        payload.chima = self.signing_key.as_ref().map(|key| {
            key.sign(ChimaRequest {
                version: chima_payload::REQUEST_VERSION,
                nonce: nonce.clone(),
                issued_at: chrono::Utc::now().timestamp(),
                adapter: chat.adapter.to_string(),
                user_id: chat.requester.user_id.clone(),
                user_name: chat.requester.user_name.clone(),
                room: Some(chat.room.clone()).filter(|r| !r.is_empty()),
                thread_ts: chat.thread_ts.clone(),
                app: request.app.clone(),
                environment: request.environment.clone(),
                git_ref: git_ref.clone(),
                task: request.task.clone(),
                hosts: request.hosts.clone(),
                emergency: request.emergency.clone(),
            })
        });
        let body = DeploymentBody {
            git_ref: git_ref.clone(),
            task: request.task.clone(),
            auto_merge: request.auto_merge,
            required_contexts: request.required_contexts.clone(),
            environment: request.environment.clone(),
            description: format!(
                "{} on {} from chima-v{}",
                request.task,
                request.environment,
                env!("CARGO_PKG_VERSION")
            ),
            production_environment: request.production_environment,
            transient_environment: request.transient_environment,
            payload: payload.to_value(),
        };
        let outcome = self
            .gh
            .create_deployment_with(repo, &body, &request_id)
            .await
            .map_err(|e| failed(repo, e))?;
        if let CreateOutcome::Created { id, .. } = &outcome {
            self.route_to_response_url(*id, chat).await;
        }
        Ok(Created::OnGitHub {
            app: request.app.clone(),
            environment: request.environment.clone(),
            git_ref,
            task: request.task.clone(),
            outcome,
        })
    }

    async fn redeploy(&self, apps: &Apps, d: &Deployment, chat: &Chat) -> anyhow::Result<Created> {
        let sha = d
            .sha
            .as_deref()
            .context("the deployment to redeploy has no sha")?;
        let request = Remote::redeploy_request(apps, d, sha)?;
        let payload = crate::bot::payload(&request, chat, "chima");
        self.create(&request, payload, chat).await
    }

    async fn follow(&self, _id: i64, _to: &Say) -> anyhow::Result<Option<Deployment>> {
        Ok(None)
    }

    async fn history(&self, app: &App, env: Option<&str>) -> anyhow::Result<History> {
        if let Some(api) = &self.faseng {
            let list = api.history(&app.name, env, 10).await?;
            return Ok(History::Stored(
                list.deployments.into_iter().map(|d| d.deployment).collect(),
                Vec::new(),
            ));
        }
        let repo = &app.repository;
        let list = self
            .gh
            .list_deployments(repo, env, 10)
            .await
            .map_err(|e| failed(repo, e))?;
        Ok(History::GitHub(list))
    }

    /// The lock on app+environment, from faseng (none without FASENG_URL).
    async fn lock_of(&self, app: &str, env: &str) -> anyhow::Result<Option<Lock>> {
        let Some(api) = &self.faseng else {
            return Ok(None);
        };
        Ok(api
            .locks()
            .await?
            .locks
            .into_iter()
            .find(|l| l.app == app && l.environment == env))
    }

    async fn lock(&self, app: &str, env: &str, ask: &LockRequest) -> anyhow::Result<LockResult> {
        Ok(match self.api()?.lock(app, env, ask).await? {
            LockAnswer::Locked { lock } => LockResult::Acquired(lock),
            LockAnswer::Held { lock } => LockResult::HeldBy(lock),
        })
    }

    async fn freezes(&self) -> anyhow::Result<Vec<Freeze>> {
        let Some(api) = &self.faseng else {
            return Ok(Vec::new());
        };
        Ok(api.freezes().await?.freezes)
    }

    async fn freeze(&self, app: &str, env: &str, ask: &FreezeRequest) -> anyhow::Result<Freeze> {
        Ok(self.api()?.freeze(app, env, ask).await?.freeze)
    }

    async fn unfreeze(&self, app: &str, env: Option<&str>) -> anyhow::Result<Vec<Freeze>> {
        Ok(self.api()?.unfreeze(app, env).await?.lifted)
    }

    async fn unlock(&self, app: &str, env: &str) -> anyhow::Result<Option<Lock>> {
        Ok(match self.api()?.unlock(app, env).await? {
            UnlockAnswer::Unlocked { lock } => Some(lock),
            UnlockAnswer::NotLocked => None,
        })
    }

    async fn cancel(&self, app: &str, env: &str, by: &str) -> anyhow::Result<Cancelled> {
        Ok(match self.api()?.cancel(app, env, by).await? {
            CancelAnswer::Cancelled { deployment } => Cancelled::Dequeued(deployment.deployment),
            CancelAnswer::Stopping { deployment } => Cancelled::Stopping(deployment.deployment),
            CancelAnswer::Finished { .. } | CancelAnswer::Nothing => Cancelled::Nothing,
        })
    }

    async fn rollback_target(&self, app: &str, env: &str) -> anyhow::Result<RollbackTo> {
        let answer = self.api()?.rollback_target(app, env).await?;
        Ok(match (answer.current, answer.target, answer.why) {
            (Some(current), Some(target), _) => Ok(Rollback {
                current: current.deployment,
                target: target.deployment,
            }),
            (Some(current), None, Some(NoRollbackWhy::NothingBefore)) => {
                Err(NoRollback::NothingBefore(Box::new(current.deployment)))
            }
            _ => Err(NoRollback::NeverDeployed),
        })
    }

    async fn set_autodeploy(&self, app: &str, env: &str, off: Option<&PauseRequest>) -> Switched {
        self.api()?.set_autodeploy(app, env, off).await
    }

    /// faseng decides, by its own app.json: chima says who asks (as it does for a
    /// deployment), as faseng's API's trusted caller.
    async fn decide(
        &self,
        id: i64,
        who: &chima_payload::Identity,
        decision: chima_store::Decision,
        reason: Option<&str>,
    ) -> DecideAnswer {
        let body = DecisionRequest {
            approver: who.display(),
            approver_id: who.chat_user_id.clone(),
            reason: reason.map(str::to_string),
        };
        Ok(
            match self.api()?.decide(id, decision.as_str(), &body).await? {
                DecisionAnswer::Decided { decided } => Ok(*decided),
                DecisionAnswer::Refused { error } => Err(error),
            },
        )
    }

    async fn autodeploy_state(&self, app: &str, env: &str) -> anyhow::Result<AutoDeployNow> {
        let state = self.api()?.autodeploy_state(app, env).await?;
        Ok((state.pause, state.last))
    }

    async fn ci_status(
        &self,
        app: &App,
        git_ref: Option<String>,
    ) -> anyhow::Result<(String, CiState)> {
        let repo = &app.repository;
        let git_ref = match git_ref {
            Some(r) => r,
            None => self.default_branch(repo).await?,
        };
        match self.gh.ci_state(repo, &git_ref).await {
            Ok(ci) => Ok((git_ref, ci)),
            Err(e) => Err(failed(repo, e)),
        }
    }
}
