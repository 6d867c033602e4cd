//! The GitHub backend: a deploy is a GitHub Deployment (hubot-deploy's body),
//! which faseng receives by webhook and runs. Every answer GitHub can give
//! gets its own reply, so nobody is left guessing.

use anyhow::Context;
use chima_command::Command;
use chima_config::{Apps, DeploymentRequest};
use chima_github::{CreateOutcome, DeploymentBody, GitHub, GitHubError, RequestId};
use chima_payload::{ChimaRequest, DeploymentPayload, SigningKey};

use crate::bot::{Chat, Ending, Say, refuse, say};
use crate::faseng_api::{FasengApi, enc};
use hyper::Method;
use serde_json::json;

pub struct GitHubBackend {
    pub gh: GitHub,
    /// faseng's API, for locks, cancel, rollback and history.
    pub faseng: Option<FasengApi>,
    /// Signs the request chima puts in each deployment, so that faseng knows which
    /// chat user asked (CHIMA_SIGNING_KEY, or derived from FASENG_API_TOKEN). Without
    /// it deployments count as chima's GitHub login only.
    pub signing_key: Option<SigningKey>,
}

impl GitHubBackend {
    pub async fn deploy(
        &self,
        request: &DeploymentRequest,
        payload: DeploymentPayload,
        chat: &Chat,
        to: &Say,
    ) -> anyhow::Result<Ending> {
        if let Some(lock) = self.lock_of(&request.app, &request.environment).await?
            && !lock.held_by(&crate::bot::identity(chat).key(), &chat.requester.user_name)
        {
            say(
                to,
                format!(
                    "{} is locked by {}: {}. Nothing was deployed.",
                    request.environment,
                    lock.holder,
                    lock.reason.as_deref().unwrap_or("no reason given")
                ),
            );
            return Ok(Ending::Failed);
        }
        self.create(request, payload, chat, to).await
    }

    /// The lock on app+environment, from faseng (none without FASENG_URL).
    async fn lock_of(&self, app: &str, env: &str) -> anyhow::Result<Option<chima_store::Lock>> {
        let Some(api) = &self.faseng else {
            return Ok(None);
        };
        let locks = api.get("/locks").await?;
        let list: Vec<chima_store::Lock> =
            serde_json::from_value(locks.body["locks"].clone()).unwrap_or_default();
        Ok(list
            .into_iter()
            .find(|l| l.app == app && l.environment == env))
    }

    async fn create(
        &self,
        request: &DeploymentRequest,
        mut payload: DeploymentPayload,
        chat: &Chat,
        to: &Say,
    ) -> anyhow::Result<Ending> {
        let repo = &request.repository;
        let git_ref = match &request.git_ref {
            Some(r) => r.clone(),
            None => match self.gh.default_branch(repo).await {
                Ok(b) => b,
                Err(e) => return Ok(github_error(to, &e, repo)),
            },
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
            })
        });
        let payload = payload.to_value();
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
            payload,
        };
        let what = format!("{}/{} to {}", request.app, git_ref, request.environment);
        match self
            .gh
            .create_deployment_with(repo, &body, &request_id)
            .await
        {
            Ok(CreateOutcome::Created { id, sha, .. }) => {
                self.route_to_response_url(id, chat).await;
                say(
                    to,
                    format!(
                        "Created GitHub deployment #{id} of {what} (commit {}). faseng will post its progress and log link here.",
                        &sha[..sha.len().min(7)]
                    ),
                );
                Ok(Ending::Ok)
            }
            Ok(CreateOutcome::AutoMerged { message }) => {
                say(
                    to,
                    format!(
                        "GitHub merged the default branch into {git_ref} first ({message}), so no deployment was created yet. Run the same command again once CI has passed on the merge commit."
                    ),
                );
                Ok(Ending::Failed)
            }
            Ok(CreateOutcome::FailingContexts { contexts, message }) => {
                let named = if contexts.is_empty() {
                    message
                } else {
                    contexts
                        .iter()
                        .map(|c| format!("{} ({})", c.context, c.state))
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                say(
                    to,
                    format!(
                        "GitHub refused to deploy {what}: required checks are not green: {named}. Fix them, or say `deploy!` to skip the checks. Nothing was deployed."
                    ),
                );
                Ok(Ending::Failed)
            }
            Ok(CreateOutcome::MergeConflict { message }) => {
                say(
                    to,
                    format!(
                        "GitHub could not merge the default branch into {git_ref}: {message}. Resolve the conflict, or say `deploy!` to deploy without merging. Nothing was deployed."
                    ),
                );
                Ok(Ending::Failed)
            }
            Ok(CreateOutcome::NotCreated { message }) => {
                say(
                    to,
                    format!(
                        "GitHub is failing: it did not create the deployment of {what}, on two tries ({message}). Nothing was deployed; try again in a few minutes."
                    ),
                );
                Ok(Ending::Failed)
            }
            Ok(CreateOutcome::Unconfirmed { message }) => {
                say(
                    to,
                    format!(
                        "GitHub failed while creating the deployment of {what}, and I could not check whether it was created ({message}). It may still run: look at `deploys {}` (or the repository's deployments on GitHub) before deploying again.",
                        request.app
                    ),
                );
                Ok(Ending::Failed)
            }
            Err(e) => Ok(github_error(to, &e, repo)),
        }
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
        let body = json!({
            "response_url": url,
            "expires_in_secs": crate::bot::RESPONSE_URL_LIFETIME.as_secs(),
            "uses_left": chat.route_uses_left(),
        });
        let path = format!("/chat-routes/{}", enc(&format!("github:{id}")));
        match api.call(Method::PUT, &path, Some(&body)).await {
            Ok(answer) if (200..300).contains(&answer.status) => {}
            Ok(answer) => {
                tracing::warn!(deployment = id, status = answer.status, error = %answer.body.get("error").and_then(serde_json::Value::as_str).unwrap_or(""), "faseng refused the slash command's response_url: the deployment's messages go to the app's notify_room");
            }
            Err(e) => {
                tracing::warn!(deployment = id, error = %format!("{e:#}"), "cannot give faseng the slash command's response_url: the deployment's messages go to the app's notify_room");
            }
        }
    }

    pub async fn command(
        &self,
        apps: &Apps,
        default_env: &str,
        command: Command,
        chat: &Chat,
        to: &Say,
    ) -> anyhow::Result<Ending> {
        let user = &chat.requester.user_name;
        let needs_faseng = matches!(
            command,
            Command::AutoDeploy { .. }
                | Command::Where { .. }
                | Command::Lock { .. }
                | Command::Unlock { .. }
                | Command::Cancel { .. }
                | Command::Rollback { .. }
        );
        let api = match (&self.faseng, needs_faseng) {
            (Some(api), _) => Some(api),
            (None, false) => None,
            (None, true) => {
                say(
                    to,
                    format!(
                        "`{}` needs faseng's API: set FASENG_URL and FASENG_API_TOKEN for chima. Nothing was done.",
                        command.name()
                    ),
                );
                return Ok(Ending::Usage);
            }
        };
        match command {
            Command::Where { app } => {
                let app = match apps.app(&app) {
                    Ok(a) => a,
                    Err(r) => return Ok(refuse(to, &r)),
                };
                let mut lines = vec![format!("You can deploy {} to:", app.name)];
                for env in &app.environments {
                    match self.lock_of(&app.name, &env.name).await? {
                        Some(l) => lines.push(format!(
                            "  {} (locked by {}: {})",
                            env.name,
                            l.holder,
                            l.reason.as_deref().unwrap_or("no reason given")
                        )),
                        None => lines.push(format!("  {}", env.name)),
                    }
                    if let Some(rule) = app.auto_deploy.get(&env.name) {
                        let (pause, last) =
                            crate::bot::AutoDeploySwitch::state(self, &app.name, &env.name).await?;
                        lines.push(crate::bot::autodeploy_line(
                            &env.name,
                            rule,
                            pause.as_ref(),
                            last.as_ref(),
                        ));
                    }
                }
                say(to, lines.join("\n"));
                Ok(Ending::Ok)
            }
            Command::AutoDeploy {
                app,
                env,
                enabled,
                reason,
            } => {
                crate::bot::autodeploy(
                    apps,
                    default_env,
                    self,
                    &app,
                    env,
                    enabled,
                    reason,
                    user,
                    to,
                )
                .await
            }
            Command::Rollback { app, env } => {
                let Some(api) = api else {
                    return Ok(Ending::Usage);
                };
                let t = match apps.target(&app, Some(&env), default_env) {
                    Ok(t) => t,
                    Err(r) => return Ok(refuse(to, &r)),
                };
                let path = format!(
                    "/environments/{}/{}/rollback",
                    enc(&t.app.name),
                    enc(t.environment)
                );
                let a = api.get(&path).await?;
                let target: Option<chima_store::Deployment> =
                    serde_json::from_value(a.body["target"].clone()).ok();
                let current: Option<chima_store::Deployment> =
                    serde_json::from_value(a.body["current"].clone()).ok();
                let (Some(target), Some(current)) = (target, current) else {
                    let why = if a.body["why"] == "nothing_before" {
                        "only one commit ever deployed there successfully; there is nothing before it"
                    } else {
                        "nothing ever deployed there successfully"
                    };
                    say(
                        to,
                        format!(
                            "Cannot roll back {} in {}: {why}.",
                            t.app.name, t.environment
                        ),
                    );
                    return Ok(Ending::Failed);
                };
                let Some(sha) = target.sha.clone() else {
                    return Ok(Ending::Failed);
                };
                say(to, crate::embedded::rollback_text(&current, &target));
                let mut request = self.rollback_request(apps, &target, &sha)?;
                request.git_ref = Some(sha);
                let payload = crate::bot::payload(&request, chat, "chima");
                self.create(&request, payload, chat, to).await
            }
            Command::Deploys { app, env, .. } if api.is_some() => {
                let Some(api) = api else {
                    return Ok(Ending::Usage);
                };
                let env = match &env {
                    Some(e) => match apps.target(&app, Some(e), default_env) {
                        Ok(t) => Some(t.environment.to_string()),
                        Err(r) => return Ok(refuse(to, &r)),
                    },
                    None => match apps.app(&app) {
                        Ok(_) => None,
                        Err(r) => return Ok(refuse(to, &r)),
                    },
                };
                let mut path = format!("/deployments?view=history&limit=10&app={}", enc(&app));
                if let Some(e) = &env {
                    path.push_str(&format!("&environment={}", enc(e)));
                }
                let a = api.get(&path).await?;
                let list: Vec<chima_store::Deployment> =
                    serde_json::from_value(a.body["deployments"].clone()).unwrap_or_default();
                if list.is_empty() {
                    say(to, format!("No deployments of {app} yet."));
                } else {
                    say(
                        to,
                        list.iter()
                            .map(crate::bot::summary)
                            .collect::<Vec<_>>()
                            .join("\n"),
                    );
                }
                Ok(Ending::Ok)
            }
            Command::Deploys { app, env, .. } => {
                let (repo, env) = match &env {
                    Some(e) => match apps.target(&app, Some(e), default_env) {
                        Ok(t) => (t.app.repository.clone(), Some(t.environment.to_string())),
                        Err(r) => return Ok(refuse(to, &r)),
                    },
                    None => match apps.app(&app) {
                        Ok(a) => (a.repository.clone(), None),
                        Err(r) => return Ok(refuse(to, &r)),
                    },
                };
                let list = match self.gh.list_deployments(&repo, env.as_deref(), 10).await {
                    Ok(l) => l,
                    Err(e) => return Ok(github_error(to, &e, &repo)),
                };
                if list.is_empty() {
                    say(to, format!("No deployments of {app} on GitHub yet."));
                    return Ok(Ending::Ok);
                }
                let now = chrono::Utc::now();
                let lines: Vec<String> = list
                    .iter()
                    .map(|d| {
                        format!(
                            "#{} {} {}/{} ({}) to {} by {}, {} ago{}",
                            d.id,
                            d.state.as_deref().unwrap_or("no status"),
                            app,
                            d.git_ref,
                            &d.sha[..d.sha.len().min(7)],
                            d.environment,
                            d.creator,
                            age(now - d.created_at),
                            if d.description.as_deref() == Some("auto-deploy") {
                                " [auto-deploy]"
                            } else {
                                ""
                            }
                        )
                    })
                    .collect();
                say(to, lines.join("\n"));
                Ok(Ending::Ok)
            }
            Command::Status { app, git_ref } => {
                let a = match apps.app(&app) {
                    Ok(a) => a,
                    Err(r) => return Ok(refuse(to, &r)),
                };
                let repo = a.repository.clone();
                let git_ref = match git_ref.or_else(|| a.default_ref.clone()) {
                    Some(r) => r,
                    None => match self.gh.default_branch(&repo).await {
                        Ok(b) => b,
                        Err(e) => return Ok(github_error(to, &e, &repo)),
                    },
                };
                let ci = match self.gh.ci_state(&repo, &git_ref).await {
                    Ok(c) => c,
                    Err(e) => return Ok(github_error(to, &e, &repo)),
                };
                let mut lines = vec![format!(
                    "{app}/{git_ref} ({}) is {}:",
                    &ci.sha[..ci.sha.len().min(7)],
                    ci.state
                )];
                for s in &ci.statuses {
                    lines.push(format!(
                        "  {} {}{}",
                        s.state,
                        s.context,
                        s.target_url
                            .as_deref()
                            .map(|u| format!(" {u}"))
                            .unwrap_or_default()
                    ));
                }
                for c in &ci.check_runs {
                    lines.push(format!(
                        "  {} {}{}",
                        c.conclusion.as_deref().unwrap_or(&c.status),
                        c.name,
                        c.html_url
                            .as_deref()
                            .map(|u| format!(" {u}"))
                            .unwrap_or_default()
                    ));
                }
                if ci.statuses.is_empty() && ci.check_runs.is_empty() {
                    lines.push("  no commit statuses or check runs".to_string());
                }
                say(to, lines.join("\n"));
                Ok(Ending::Ok)
            }
            other => {
                say(
                    to,
                    format!("`{}` is not handled here; nothing was done.", other.name()),
                );
                Ok(Ending::Usage)
            }
        }
    }

    /// A forced deployment of `sha`, as the rolled-back-to deployment was made.
    fn rollback_request(
        &self,
        apps: &Apps,
        d: &chima_store::Deployment,
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
        })
    }
}

/// The reply for a failed GitHub call: which credential or scope to fix.
fn github_error(to: &Say, e: &GitHubError, repo: &str) -> Ending {
    let text = match e {
        GitHubError::NotFound { .. } => format!(
            "GitHub does not show {repo} to me ({e}). Check `repository` in app.json and that the token (or the GitHub App's installation) can see it. Nothing was deployed."
        ),
        GitHubError::Unavailable { .. } => {
            format!("I could not reach GitHub ({e}). Nothing was deployed; try again in a moment.")
        }
        _ => format!("{e}. Nothing was deployed."),
    };
    say(to, text);
    Ending::Failed
}

fn age(d: chrono::TimeDelta) -> String {
    let s = d.num_seconds().max(0);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    }
}

/// Auto-deploy pauses live in faseng's store: reached through its API.
#[async_trait::async_trait]
impl crate::bot::AutoDeploySwitch for GitHubBackend {
    async fn pause(
        &self,
        app: &str,
        env: &str,
        by: &str,
        reason: Option<&str>,
    ) -> anyhow::Result<()> {
        let api = self.faseng.as_ref().context("FASENG_URL is not set")?;
        let path = format!("/autodeploy/{}/{}", enc(app), enc(env));
        api.call(
            Method::PUT,
            &path,
            Some(&json!({"by": by, "reason": reason})),
        )
        .await?;
        Ok(())
    }

    async fn resume(
        &self,
        app: &str,
        env: &str,
    ) -> anyhow::Result<Option<chima_store::AutoDeployPause>> {
        let api = self.faseng.as_ref().context("FASENG_URL is not set")?;
        let path = format!("/autodeploy/{}/{}", enc(app), enc(env));
        let r = api.call(Method::DELETE, &path, None).await?;
        Ok(serde_json::from_value(r.body["resumed"].clone())
            .ok()
            .flatten())
    }

    async fn state(
        &self,
        app: &str,
        env: &str,
    ) -> anyhow::Result<(
        Option<chima_store::AutoDeployPause>,
        Option<chima_store::AutoDeploy>,
    )> {
        let api = self.faseng.as_ref().context("FASENG_URL is not set")?;
        let a = api
            .get(&format!("/autodeploy/{}/{}", enc(app), enc(env)))
            .await?;
        Ok((
            serde_json::from_value(a.body["pause"].clone())
                .ok()
                .flatten(),
            serde_json::from_value(a.body["last"].clone())
                .ok()
                .flatten(),
        ))
    }
}

/// Locks and cancel live in faseng: reached through its API.
#[async_trait::async_trait]
impl crate::bot::EnvOps for GitHubBackend {
    async fn lock(
        &self,
        app: &str,
        env: &str,
        holder: &str,
        holder_id: &str,
        reason: Option<&str>,
        expires_in: Option<std::time::Duration>,
    ) -> anyhow::Result<chima_store::LockResult> {
        let api = self.faseng.as_ref().context("FASENG_URL is not set")?;
        let body = json!({"holder": holder, "holder_id": holder_id, "reason": reason, "expires_in": expires_in.map(|d| d.as_secs())});
        let a = api
            .call(
                Method::PUT,
                &format!("/locks/{}/{}", enc(app), enc(env)),
                Some(&body),
            )
            .await?;
        let lock: chima_store::Lock =
            serde_json::from_value(a.body["lock"].clone()).with_context(|| {
                format!(
                    "faseng did not take the lock ({}): {}",
                    a.status,
                    a.body["error"].as_str().unwrap_or("no details")
                )
            })?;
        Ok(if a.status == 201 {
            chima_store::LockResult::Acquired(lock)
        } else {
            chima_store::LockResult::HeldBy(lock)
        })
    }

    async fn unlock(&self, app: &str, env: &str) -> anyhow::Result<Option<chima_store::Lock>> {
        let api = self.faseng.as_ref().context("FASENG_URL is not set")?;
        let a = api
            .call(
                Method::DELETE,
                &format!("/locks/{}/{}", enc(app), enc(env)),
                None,
            )
            .await?;
        Ok(serde_json::from_value(a.body["lock"].clone()).ok())
    }

    async fn cancel(
        &self,
        app: &str,
        env: &str,
        by: &str,
    ) -> anyhow::Result<chima_engine::ops::Cancelled> {
        use chima_engine::ops::Cancelled;
        let api = self.faseng.as_ref().context("FASENG_URL is not set")?;
        let path = format!("/environments/{}/{}/cancel", enc(app), enc(env));
        let a = api
            .call(Method::POST, &path, Some(&json!({"by": by})))
            .await?;
        let d: Option<chima_store::Deployment> =
            serde_json::from_value(a.body["deployment"].clone()).ok();
        Ok(match (a.body["result"].as_str(), d) {
            (Some("cancelled"), Some(d)) => Cancelled::Dequeued(d),
            (Some("stopping"), Some(d)) => Cancelled::Stopping(d),
            _ => Cancelled::Nothing,
        })
    }
}
