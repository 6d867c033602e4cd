//! The embedded backend: no GitHub. Deployments go to the same store and
//! engine faseng uses, in this process (an SQLite file by default).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chima_command::Command;
use chima_config::{Apps, DeploymentRequest};
use chima_engine::ops::{Cancelled, NoRollback};
use chima_engine::{Engine, EngineConfig};
use chima_payload::DeploymentPayload;
use chima_store::{Deployment, DeploymentState, LockResult, NewDeployment, Store};
use serde_json::Value;

use crate::bot::{Chat, Ending, Say, refuse, say};

pub struct Embedded {
    pub store: Arc<dyn Store>,
    engine: tokio::sync::Mutex<Option<Engine>>,
}

impl Embedded {
    /// Opens the store and starts the engine's workers.
    pub async fn start(
        apps: Arc<Apps>,
        apps_path: &Path,
        database_url: &str,
        workers: usize,
        lease: Duration,
    ) -> anyhow::Result<Embedded> {
        let store = chima_store::open(database_url)
            .await
            .with_context(|| "cannot open the deployment store (DATABASE_URL)")?;
        let apps_dir = apps_path
            .canonicalize()
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf))
            .unwrap_or_else(|| Path::new(".").to_path_buf());
        let mut cfg = EngineConfig::new(Some(apps), &apps_dir);
        cfg.workers = workers.max(1);
        cfg.instance = "chima".to_string();
        cfg.lease = lease;
        // Providers run under a guard (this binary, `chima guard`), as in faseng.
        cfg.guard = chima_engine::GuardProgram::this_binary()
            .map_err(|e| tracing::warn!(error = %e, "cannot find chima's own binary; providers run unguarded"))
            .ok();
        let engine = Engine::start(store.clone(), cfg);
        Ok(Embedded {
            store,
            engine: tokio::sync::Mutex::new(Some(engine)),
        })
    }

    /// Stops the workers, letting running deployments finish.
    pub async fn stop(&self) {
        if let Some(engine) = self.engine.lock().await.take() {
            engine.shutdown().await;
        }
    }

    pub async fn deploy(
        &self,
        request: &DeploymentRequest,
        payload: DeploymentPayload,
        chat: &Chat,
        to: &Say,
        follow: bool,
    ) -> anyhow::Result<Ending> {
        let user = &chat.requester.user_name;
        let lock = self
            .store
            .get_lock(&request.app, &request.environment)
            .await?;
        if let Some(lock) = lock
            && !lock.held_by(&crate::bot::identity(chat).key(), user)
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
        let git_ref = request
            .git_ref
            .clone()
            .unwrap_or_else(|| "HEAD".to_string());
        let source_key = format!(
            "chima-{}-{}-{}",
            chat.adapter,
            std::process::id(),
            chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default()
        );
        // A slash command's deployment reports through its response_url while it
        // lasts: the route is in the store before the deployment, so that its first
        // message already finds it.
        if let Some(url) = &chat.response_url {
            let expires_at = chrono::Utc::now()
                + chrono::Duration::from_std(crate::bot::RESPONSE_URL_LIFETIME)
                    .unwrap_or(chrono::Duration::minutes(30));
            if let Err(e) = self
                .store
                .set_chat_route(&source_key, url, expires_at, chat.route_uses_left())
                .await
            {
                tracing::warn!(error = %e, "cannot record the slash command's response_url: the deployment's messages go to the app's notify_room");
            }
        }
        let new = NewDeployment {
            source_key,
            requester: user.clone(),
            app: request.app.clone(),
            environment: request.environment.clone(),
            repository: request.repository.clone(),
            git_ref,
            sha: None,
            task: request.task.clone(),
            hosts: request.hosts.clone(),
            provider: request
                .config
                .get("provider")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            payload: crate::bot::local_payload(&payload, chat),
            github_deployment_id: None,
            notify: vec!["chat".to_string()],
            timeout_secs: None,
        };
        let d = self.store.create_deployment(new).await?.deployment;
        say(
            to,
            format!(
                "Deployment #{} of {}/{} to {} is queued.",
                d.id, d.app, d.git_ref, d.environment
            ),
        );
        if !follow {
            return Ok(Ending::Ok);
        }
        let done = self.follow(d.id, to).await?;
        Ok(if done.state == DeploymentState::Succeeded {
            Ending::Ok
        } else {
            Ending::Failed
        })
    }

    /// The commands other than deploy, help and version.
    pub async fn command(
        &self,
        apps: &Apps,
        default_env: &str,
        command: Command,
        chat: &Chat,
        to: &Say,
    ) -> anyhow::Result<Ending> {
        let user = &chat.requester.user_name;
        match command {
            Command::Where { app } => {
                let app = match apps.app(&app) {
                    Ok(a) => a,
                    Err(r) => return Ok(refuse(to, &r)),
                };
                let mut lines = vec![format!("You can deploy {} to:", app.name)];
                for env in &app.environments {
                    match self.store.get_lock(&app.name, &env.name).await? {
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
            Command::Deploys { app, env, .. } => {
                let env = match env {
                    Some(e) => match apps.target(&app, Some(&e), default_env) {
                        Ok(t) => Some(t.environment.to_string()),
                        Err(r) => return Ok(refuse(to, &r)),
                    },
                    None => match apps.app(&app) {
                        Ok(_) => None,
                        Err(r) => return Ok(refuse(to, &r)),
                    },
                };
                let list =
                    chima_engine::ops::history(self.store.as_ref(), &app, env.as_deref(), 10)
                        .await?;
                if list.is_empty() {
                    say(to, format!("No deployments of {app} yet."));
                    return Ok(Ending::Ok);
                }
                let lines: Vec<String> = list.iter().map(crate::bot::summary).collect();
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
                let target = match apps.target(&app, Some(&env), default_env) {
                    Ok(t) => t,
                    Err(r) => return Ok(refuse(to, &r)),
                };
                let (name, env) = (target.app.name.clone(), target.environment.to_string());
                match chima_engine::ops::rollback_target(self.store.as_ref(), &name, &env).await? {
                    Err(NoRollback::NeverDeployed) => {
                        say(
                            to,
                            format!(
                                "Nothing ever deployed {name} to {env} successfully; there is nothing to roll back to."
                            ),
                        );
                        Ok(Ending::Failed)
                    }
                    Err(NoRollback::NothingBefore(c)) => {
                        say(
                            to,
                            format!(
                                "Only one commit ({}) ever deployed {name} to {env} successfully; there is nothing before it to roll back to.",
                                short(&c.sha)
                            ),
                        );
                        Ok(Ending::Failed)
                    }
                    Ok(r) => {
                        say(to, rollback_text(&r.current, &r.target));
                        let Some(sha) = r.target.sha.clone() else {
                            return Ok(Ending::Failed);
                        };
                        let d = r.target;
                        // The rollback is this user's request: the old deployment's
                        // payload carries the old requester's identity.
                        let (mut sent, _) = DeploymentPayload::read(&d.payload);
                        sent.faseng = None;
                        let payload = crate::bot::local_payload(&sent, chat);
                        let new = NewDeployment {
                            source_key: format!(
                                "chima-rollback-{}-{}",
                                std::process::id(),
                                chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default()
                            ),
                            requester: user.clone(),
                            app: d.app.clone(),
                            environment: d.environment.clone(),
                            repository: d.repository.clone(),
                            git_ref: sha.clone(),
                            sha: Some(sha),
                            task: d.task.clone(),
                            hosts: d.hosts.clone(),
                            provider: d.provider.clone(),
                            payload,
                            github_deployment_id: None,
                            notify: vec!["chat".to_string()],
                            timeout_secs: d.timeout_secs,
                        };
                        let d = self.store.create_deployment(new).await?.deployment;
                        say(
                            to,
                            format!(
                                "Deployment #{} of {}/{} to {} is queued.",
                                d.id, d.app, d.git_ref, d.environment
                            ),
                        );
                        Ok(Ending::Ok)
                    }
                }
            }
            other => {
                say(
                    to,
                    format!(
                        "`{}` is not available in the embedded mode; nothing was done.",
                        other.name()
                    ),
                );
                Ok(Ending::Usage)
            }
        }
    }

    /// Shows the deployment's chat notifications (from the outbox) and its log
    /// as they come, until it ends.
    async fn follow(&self, id: i64, to: &Say) -> anyhow::Result<Deployment> {
        let mut seq = 0;
        // Taken from the outbox but held: how it ended is said after its last log line.
        let mut ending = Vec::new();
        loop {
            // News of the deployment as it comes, except how it ended.
            for entry in self.store.take_due_outbox("chat", 100).await? {
                if entry.event.is_terminal() && entry.deployment_id == id {
                    ending.push(entry);
                    continue;
                }
                self.notify(&entry, to).await?;
            }
            // The state is read before the log: a deployment seen ended has all its
            // lines stored, so the lines read next are the last ones.
            let d = self
                .store
                .get_deployment(id)
                .await?
                .with_context(|| format!("deployment #{id} disappeared"))?;
            for line in self.store.read_logs(id, seq, 1000).await? {
                seq = line.seq;
                say(to, format!("  | {}", line.line));
            }
            let drained = self.store.read_logs(id, seq, 1).await?.is_empty();
            if drained && d.state.is_terminal() {
                for entry in ending.drain(..) {
                    self.notify(&entry, to).await?;
                }
            }
            let notified = self
                .store
                .outbox_for_deployment(id)
                .await?
                .iter()
                .all(|e| e.target != "chat" || e.delivered_at.is_some());
            if d.state.is_terminal() && drained && notified {
                return Ok(d);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Embedded {
    /// Says one outbox entry in chat and marks it delivered.
    async fn notify(&self, entry: &chima_store::OutboxEntry, to: &Say) -> anyhow::Result<()> {
        let d = self.store.get_deployment(entry.deployment_id).await?;
        if let Some(text) = d.and_then(|d| notification(&d, entry.event)) {
            say(to, text);
        }
        self.store.mark_delivered(entry.id).await?;
        Ok(())
    }
}

fn short(sha: &Option<String>) -> &str {
    sha.as_deref().map(|s| &s[..s.len().min(7)]).unwrap_or("-")
}

/// What a rollback will do, in words.
pub fn rollback_text(current: &Deployment, target: &Deployment) -> String {
    format!(
        "Rolling back {} in {} from {} (#{}) to {}, deployed {} by {} as #{}.",
        target.app,
        target.environment,
        short(&current.sha),
        current.id,
        short(&target.sha),
        target
            .finished_at
            .unwrap_or(target.created_at)
            .format("%Y-%m-%d %H:%M UTC"),
        target.requester,
        target.id
    )
}

/// The chat text for a state change (README, "Slack").
fn notification(d: &Deployment, state: DeploymentState) -> Option<String> {
    let head = format!(
        "{}'s deployment #{} of {}/{} to {}",
        d.requester, d.id, d.app, d.git_ref, d.environment
    );
    let reason = d.reason.as_deref().unwrap_or("");
    Some(match state {
        DeploymentState::Queued => return None,
        DeploymentState::Running => format!("{head} is running."),
        DeploymentState::Succeeded => format!("{head} was successful."),
        DeploymentState::Failed => format!(
            "{head} failed{}: {reason}.",
            d.exit_code
                .map(|c| format!(" (exit code {c})"))
                .unwrap_or_default()
        ),
        DeploymentState::Errored => format!("{head} could not run: {reason}."),
        DeploymentState::Cancelled => format!("{head} was cancelled: {reason}."),
    })
}

#[async_trait::async_trait]
impl crate::bot::AutoDeploySwitch for Embedded {
    async fn pause(
        &self,
        app: &str,
        env: &str,
        by: &str,
        reason: Option<&str>,
    ) -> anyhow::Result<()> {
        self.store.pause_auto_deploy(app, env, by, reason).await?;
        Ok(())
    }

    async fn resume(
        &self,
        app: &str,
        env: &str,
    ) -> anyhow::Result<Option<chima_store::AutoDeployPause>> {
        Ok(self.store.resume_auto_deploy(app, env).await?)
    }

    async fn state(
        &self,
        app: &str,
        env: &str,
    ) -> anyhow::Result<(
        Option<chima_store::AutoDeployPause>,
        Option<chima_store::AutoDeploy>,
    )> {
        Ok((
            self.store.auto_deploy_pause(app, env).await?,
            self.store.last_auto_deploy(app, env).await?,
        ))
    }
}

#[async_trait::async_trait]
impl crate::bot::EnvOps for Embedded {
    async fn lock(
        &self,
        app: &str,
        env: &str,
        holder: &str,
        holder_id: &str,
        reason: Option<&str>,
        expires_in: Option<Duration>,
    ) -> anyhow::Result<LockResult> {
        let expires_at = expires_in
            .and_then(|d| chrono::TimeDelta::from_std(d).ok())
            .map(|d| chrono::Utc::now() + d);
        Ok(self
            .store
            .lock_by(app, env, holder, Some(holder_id), reason, expires_at)
            .await?)
    }

    async fn unlock(&self, app: &str, env: &str) -> anyhow::Result<Option<chima_store::Lock>> {
        Ok(self.store.unlock(app, env).await?)
    }

    async fn cancel(&self, app: &str, env: &str, by: &str) -> anyhow::Result<Cancelled> {
        Ok(chima_engine::ops::cancel(self.store.as_ref(), app, env, by).await?)
    }
}
