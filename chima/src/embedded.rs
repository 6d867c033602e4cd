//! The embedded default: no Slack, no GitHub. Commands come from the terminal
//! (the shell adapter, as Hubot had), deployments go to the same store and
//! engine faseng uses, in this process, on an SQLite file by default.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chima_command::{Addressee, Command, ParseError, parse};
use chima_config::{Apps, Refusal, Requester};
use chima_engine::{Engine, EngineConfig};
use chima_store::{
    Deployment, DeploymentFilter, DeploymentState, LockResult, NewDeployment, Store,
};
use serde_json::json;

/// How one handled line ended, for `chima run`'s exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// A reply only, or a deployment that succeeded.
    Ok,
    /// A deployment that failed, errored or was cancelled, or a refusal.
    Failed,
    /// The line was not a valid command, or named what the config lacks.
    Usage,
}

/// The bot, its config, its store and its in-process engine.
pub struct Bot {
    pub addressee: Addressee,
    apps: Arc<Apps>,
    store: Arc<dyn Store>,
    engine: Option<Engine>,
    default_env: String,
    user: String,
}

impl Bot {
    pub async fn start(
        addressee: Addressee,
        apps_path: &Path,
        database_url: &str,
        default_env: &str,
        workers: usize,
        lease: Duration,
    ) -> anyhow::Result<Bot> {
        let apps = Apps::load(apps_path).map_err(|e| anyhow::anyhow!("{e}"))?;
        let apps = Arc::new(apps);
        let store = chima_store::open(database_url)
            .await
            .with_context(|| "cannot open the deployment store (DATABASE_URL)")?;
        let apps_dir = apps_path
            .canonicalize()
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf))
            .unwrap_or_else(|| Path::new(".").to_path_buf());
        let mut cfg = EngineConfig::new(Some(apps.clone()), &apps_dir);
        cfg.workers = workers.max(1);
        cfg.instance = "chima".to_string();
        cfg.lease = lease;
        let engine = Engine::start(store.clone(), cfg);
        let user = std::env::var("USER").unwrap_or_else(|_| "shell".to_string());
        Ok(Bot {
            addressee,
            apps,
            store,
            engine: Some(engine),
            default_env: default_env.to_string(),
            user,
        })
    }

    pub async fn stop(mut self) {
        if let Some(engine) = self.engine.take() {
            engine.shutdown().await;
        }
    }

    fn requester(&self) -> Requester {
        Requester {
            user_id: None,
            user_name: self.user.clone(),
            room_id: Some("shell".to_string()),
            room_name: Some("shell".to_string()),
        }
    }

    /// Handles one line; prints the reply and, for a deploy, follows it to
    /// the end (its notifications and its log).
    pub async fn handle(&self, line: &str, out: &mut impl Write) -> anyhow::Result<Ending> {
        let command = match parse(line, &self.addressee) {
            Ok(c) => c,
            Err(ParseError::NotAddressed) => return Ok(Ending::Ok),
            Err(e) => {
                writeln!(out, "{e}")?;
                return Ok(Ending::Usage);
            }
        };
        match command {
            Command::Deploy(d) => {
                let request =
                    match self
                        .apps
                        .resolve_deploy(&d, &self.requester(), &self.default_env)
                    {
                        Ok(r) => r,
                        Err(refusal) => return refuse(out, &refusal),
                    };
                let lock = self
                    .store
                    .get_lock(&request.app, &request.environment)
                    .await?;
                if let Some(lock) = lock
                    && lock.holder != self.user
                {
                    writeln!(
                        out,
                        "{} is locked by {}: {}. Nothing was deployed.",
                        request.environment,
                        lock.holder,
                        lock.reason.as_deref().unwrap_or("no reason given")
                    )?;
                    return Ok(Ending::Failed);
                }
                let git_ref = request
                    .git_ref
                    .clone()
                    .unwrap_or_else(|| "HEAD".to_string());
                let payload = json!({
                    "name": request.app,
                    "robotName": self.addressee.name,
                    "hosts": request.hosts.clone().unwrap_or_default(),
                    "yubikey": request.yubikey,
                    "notify": {
                        "adapter": "shell",
                        "room": "shell",
                        "user": self.user,
                        "user_name": self.user,
                        "thread_ts": null,
                    },
                    "config": request.config,
                });
                let new = NewDeployment {
                    source_key: format!(
                        "chima-shell-{}-{}",
                        std::process::id(),
                        chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default()
                    ),
                    requester: self.user.clone(),
                    app: request.app.clone(),
                    environment: request.environment.clone(),
                    repository: request.repository.clone(),
                    git_ref: git_ref.clone(),
                    sha: None,
                    task: request.task.clone(),
                    hosts: request.hosts.clone(),
                    provider: self
                        .apps
                        .get(&request.app)
                        .map(|a| a.provider.to_string())
                        .unwrap_or_default(),
                    payload,
                    github_deployment_id: None,
                    notify: vec!["chat".to_string()],
                    timeout_secs: None,
                };
                let created = self.store.create_deployment(new).await?;
                let d = created.deployment;
                writeln!(
                    out,
                    "Deployment #{} of {}/{} to {} is queued.",
                    d.id, d.app, d.git_ref, d.environment
                )?;
                out.flush()?;
                let done = self.follow(d.id, out).await?;
                Ok(if done.state == DeploymentState::Succeeded {
                    Ending::Ok
                } else {
                    Ending::Failed
                })
            }
            Command::Help => {
                writeln!(out, "{}", help_text(&self.addressee.name))?;
                Ok(Ending::Ok)
            }
            Command::Version => {
                writeln!(out, "chima {}", env!("CARGO_PKG_VERSION"))?;
                Ok(Ending::Ok)
            }
            Command::Where { app } => {
                let app = match self.apps.app(&app) {
                    Ok(a) => a,
                    Err(r) => return refuse(out, &r),
                };
                writeln!(out, "You can deploy {} to:", app.name)?;
                for env in &app.environments {
                    let lock = self.store.get_lock(&app.name, &env.name).await?;
                    match lock {
                        Some(l) => writeln!(
                            out,
                            "  {} (locked by {}: {})",
                            env.name,
                            l.holder,
                            l.reason.as_deref().unwrap_or("no reason given")
                        )?,
                        None => writeln!(out, "  {}", env.name)?,
                    }
                }
                Ok(Ending::Ok)
            }
            Command::Lock { app, env, reason } => {
                let target = match self.apps.target(&app, Some(&env), &self.default_env) {
                    Ok(t) => t,
                    Err(r) => return refuse(out, &r),
                };
                let result = self
                    .store
                    .lock(
                        &target.app.name,
                        target.environment,
                        &self.user,
                        reason.as_deref(),
                        None,
                    )
                    .await?;
                match result {
                    LockResult::Acquired(l) => writeln!(
                        out,
                        "Locked {} in {}{}. Others cannot deploy there until `unlock {} in {}`.",
                        l.app,
                        l.environment,
                        l.reason.map(|r| format!(": {r}")).unwrap_or_default(),
                        l.app,
                        l.environment
                    )?,
                    LockResult::HeldBy(l) => {
                        writeln!(
                            out,
                            "{} in {} is already locked by {}: {}.",
                            l.app,
                            l.environment,
                            l.holder,
                            l.reason.as_deref().unwrap_or("no reason given")
                        )?;
                        return Ok(Ending::Failed);
                    }
                }
                Ok(Ending::Ok)
            }
            Command::Unlock { app, env } => {
                let target = match self.apps.target(&app, Some(&env), &self.default_env) {
                    Ok(t) => t,
                    Err(r) => return refuse(out, &r),
                };
                match self
                    .store
                    .unlock(&target.app.name, target.environment)
                    .await?
                {
                    Some(l) => writeln!(
                        out,
                        "Unlocked {} in {} (it was locked by {}).",
                        l.app, l.environment, l.holder
                    )?,
                    None => writeln!(
                        out,
                        "{} in {} was not locked; nothing to do.",
                        target.app.name, target.environment
                    )?,
                }
                Ok(Ending::Ok)
            }
            Command::Deploys { app, env, .. } => {
                let env = match env {
                    Some(e) => match self.apps.target(&app, Some(&e), &self.default_env) {
                        Ok(t) => Some(t.environment.to_string()),
                        Err(r) => return refuse(out, &r),
                    },
                    None => {
                        if let Err(r) = self.apps.app(&app) {
                            return refuse(out, &r);
                        }
                        None
                    }
                };
                let filter = DeploymentFilter {
                    app: Some(app.clone()),
                    environment: env,
                    limit: 10,
                    ..DeploymentFilter::default()
                };
                let list = self.store.list_deployments(&filter).await?;
                if list.is_empty() {
                    writeln!(out, "No deployments of {app} yet.")?;
                }
                for d in list {
                    let why = match (d.state, &d.reason) {
                        (DeploymentState::Succeeded, _) | (_, None) => String::new(),
                        (_, Some(r)) => format!(": {r}"),
                    };
                    writeln!(
                        out,
                        "#{} {} {}/{} to {} by {} ({}){why}",
                        d.id,
                        d.state,
                        d.app,
                        d.git_ref,
                        d.environment,
                        d.requester,
                        d.sha
                            .as_deref()
                            .map(|s| &s[..s.len().min(7)])
                            .unwrap_or("-")
                    )?;
                }
                Ok(Ending::Ok)
            }
            other
            @ (Command::Cancel { .. } | Command::Rollback { .. } | Command::Status { .. }) => {
                writeln!(
                    out,
                    "`{}` is not available in the embedded mode yet; nothing was done.",
                    other.name()
                )?;
                Ok(Ending::Usage)
            }
        }
    }

    /// Prints the deployment's chat notifications (from the outbox) and its log
    /// as they come, until it ends.
    async fn follow(&self, id: i64, out: &mut impl Write) -> anyhow::Result<Deployment> {
        let mut seq = 0;
        loop {
            for entry in self.store.take_due_outbox("chat", 100).await? {
                let d = self.store.get_deployment(entry.deployment_id).await?;
                if let Some(text) = d.and_then(|d| notification(&d, entry.event)) {
                    writeln!(out, "{text}")?;
                }
                self.store.mark_delivered(entry.id).await?;
            }
            for line in self.store.read_logs(id, seq, 1000).await? {
                seq = line.seq;
                writeln!(out, "  | {}", line.line)?;
            }
            out.flush()?;
            let d = self
                .store
                .get_deployment(id)
                .await?
                .with_context(|| format!("deployment #{id} disappeared"))?;
            let drained = self.store.read_logs(id, seq, 1).await?.is_empty();
            if d.state.is_terminal()
                && drained
                && self
                    .store
                    .outbox_for_deployment(id)
                    .await?
                    .iter()
                    .all(|e| e.target != "chat" || e.delivered_at.is_some())
            {
                return Ok(d);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The chat text for a state change (DESIGN.md section 8).
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

fn refuse(out: &mut impl Write, refusal: &Refusal) -> anyhow::Result<Ending> {
    writeln!(out, "{refusal}")?;
    Ok(match refusal {
        Refusal::UnknownApp { .. } | Refusal::UnknownEnvironment { .. } => Ending::Usage,
        Refusal::RoomNotAllowed { .. } | Refusal::UserNotAllowed { .. } => Ending::Failed,
    })
}

pub fn help_text(name: &str) -> String {
    [
        format!("{name} deploy[:task][!] <app>[/<ref>] [to <env>[/<hosts>]] - deploy (! skips merge and CI checks)"),
        format!("{name} deploys <app>[/<ref>] [in <env>] - recent deployments"),
        format!("{name} where can i deploy <app> - environments and their locks"),
        format!("{name} lock <app> in <env> [reason] - stop others deploying there"),
        format!("{name} unlock <app> in <env> - lift the lock"),
        format!("{name} cancel <app> in <env> - stop the running or queued deployment"),
        format!("{name} rollback <app> in <env> - redeploy the last good commit"),
        format!("{name} status <app>[/<ref>] - CI state of a ref"),
        format!("{name} deploy:version - my version"),
        format!("{name} help - this list"),
    ]
    .join("\n")
}
