//! The bot's core: one chat line in, replies out, whatever the transport
//! (terminal, Slack) and whatever the backend (the in-process engine, or
//! GitHub Deployments with faseng behind them). Every line addressed to the
//! bot gets a reply that says what was done, or why nothing was.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use chima_command::{Addressee, Command, ParseError, parse};
use chima_config::{Apps, DeploymentRequest, Refusal, Requester};
use chima_payload::{ChatTarget, DeploymentPayload, FasengNotes, Identity, IdentitySource, Notify};
use serde_json::Value;
use tokio::sync::mpsc::UnboundedSender;

use crate::embedded::Embedded;
use crate::hub::GitHubBackend;

/// Where replies go: the transport reads this channel and shows each message.
pub type Say = UnboundedSender<String>;

/// Sends one reply; a transport that has gone away is not an error here.
pub fn say(to: &Say, text: impl Into<String>) {
    let _ = to.send(text.into());
}

/// How a handled line ended, for `chima run`'s exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// A reply only, or a deployment that succeeded (or was created).
    Ok,
    /// A deployment that failed, or a refusal (locked, not allowed, GitHub said no).
    Failed,
    /// The line was not a valid command, or named what the config lacks.
    Usage,
}

/// Who said the line, where, and in which thread.
#[derive(Debug, Clone)]
pub struct Chat {
    pub requester: Requester,
    /// `shell` or `slack` (hubot-deploy's `payload.notify.adapter`).
    pub adapter: &'static str,
    /// The room to notify (a channel id on Slack).
    pub room: String,
    /// The thread to post in.
    pub thread_ts: Option<String>,
    /// A slash command's `response_url`: where its replies go (the bot may not be in
    /// the channel), and where its deployment's messages go while it lasts (see
    /// [`Chat::route_uses_left`]). `None` elsewhere.
    pub response_url: Option<String>,
    /// How many replies have been sent through `response_url` so far (each takes one
    /// of Slack's 5 uses).
    pub response_uses: Arc<AtomicU32>,
}

/// Slack takes this many posts to one `response_url`
/// (https://api.slack.com/interactivity/handling#message_responses).
pub const RESPONSE_URL_USES: u32 = 5;

/// A `response_url` works this long after the command.
pub const RESPONSE_URL_LIFETIME: std::time::Duration = std::time::Duration::from_secs(30 * 60);

impl Chat {
    /// The uses of `response_url` left for a deployment's messages once it is created:
    /// Slack's 5, less the replies already sent and the one confirming the deployment.
    pub fn route_uses_left(&self) -> i32 {
        let used = self.response_uses.load(Ordering::SeqCst).saturating_add(1);
        i32::try_from(RESPONSE_URL_USES.saturating_sub(used)).unwrap_or(0)
    }
}

/// Where deployments go.
pub enum Backend {
    /// The engine in this process, on a local store.
    Embedded(Embedded),
    /// GitHub Deployments; faseng picks them up from the webhook.
    GitHub(Box<GitHubBackend>),
}

pub struct Bot {
    pub addressee: Addressee,
    pub apps: Arc<Apps>,
    pub default_env: String,
    pub backend: Backend,
}

impl Bot {
    /// Handles one line. `follow`: for the terminal, print the deployment's
    /// progress and log until it ends (embedded backend only).
    pub async fn handle(&self, line: &str, chat: &Chat, to: &Say, follow: bool) -> Ending {
        self.handle_as(line, chat, to, follow, self.addressee.direct)
            .await
    }

    /// [`Bot::handle`], with `direct`: the line needs no address (a direct
    /// message, a slash command).
    pub async fn handle_as(
        &self,
        line: &str,
        chat: &Chat,
        to: &Say,
        follow: bool,
        direct: bool,
    ) -> Ending {
        let addressee = Addressee {
            direct,
            ..self.addressee.clone()
        };
        let command = match parse(line, &addressee) {
            Ok(c) => c,
            Err(ParseError::NotAddressed) => return Ending::Ok,
            Err(e) => {
                say(to, e.to_string());
                return Ending::Usage;
            }
        };
        // Every command that changes state needs the same permission as deploying
        // there (allowed_rooms, allowed_users), in both modes. Read-only ones stay open.
        if let Some(refusal) = self.refusal(&command, &chat.requester) {
            return refuse(to, &refusal);
        }
        let result = match command {
            Command::Help => {
                say(to, help_text(&self.addressee.name));
                Ok(Ending::Ok)
            }
            Command::Version => {
                say(to, format!("chima {}", env!("CARGO_PKG_VERSION")));
                Ok(Ending::Ok)
            }
            Command::Deploy(d) => {
                match self
                    .apps
                    .resolve_deploy(&d, &chat.requester, &self.default_env)
                {
                    Err(refusal) => Ok(refuse(to, &refusal)),
                    Ok(request) => {
                        let payload = payload(&request, chat, &self.addressee.name);
                        match &self.backend {
                            Backend::Embedded(e) => {
                                e.deploy(&request, payload, chat, to, follow).await
                            }
                            Backend::GitHub(g) => g.deploy(&request, payload, chat, to).await,
                        }
                    }
                }
            }
            other => match &self.backend {
                Backend::Embedded(e) if is_env_command(&other) => env_command(
                    &self.apps,
                    &self.default_env,
                    e,
                    &other,
                    &identity(chat),
                    to,
                )
                .await
                .map(|r| r.unwrap_or(Ending::Usage)),
                Backend::GitHub(g) if is_env_command(&other) && g.faseng.is_some() => env_command(
                    &self.apps,
                    &self.default_env,
                    g.as_ref(),
                    &other,
                    &identity(chat),
                    to,
                )
                .await
                .map(|r| r.unwrap_or(Ending::Usage)),
                Backend::Embedded(e) => {
                    e.command(&self.apps, &self.default_env, other, chat, to)
                        .await
                }
                Backend::GitHub(g) => {
                    g.command(&self.apps, &self.default_env, other, chat, to)
                        .await
                }
            },
        };
        match result {
            Ok(ending) => ending,
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "command failed");
                say(
                    to,
                    format!("Something went wrong on my side, nothing more was done: {e:#}"),
                );
                Ending::Failed
            }
        }
    }
}

impl Bot {
    /// Why `who` may not run a state-changing `command`, if so: the target
    /// environment's `allowed_rooms` and `allowed_users`. Unknown apps and
    /// environments are left to the command's own reply.
    fn refusal(&self, command: &Command, who: &Requester) -> Option<Refusal> {
        let (app, env) = match command {
            Command::Lock { app, env, .. }
            | Command::Unlock { app, env }
            | Command::Cancel { app, env }
            | Command::Rollback { app, env } => (app, env),
            Command::AutoDeploy {
                app,
                env: Some(env),
                enabled: Some(_),
                ..
            } => (app, env),
            _ => return None,
        };
        let target = self.apps.target(app, Some(env), &self.default_env).ok()?;
        self.apps.check_permissions(target, who).err()
    }
}

/// The verified identity of the chat user: the transport (Slack's signed events, the
/// local terminal) vouches for it.
pub fn identity(chat: &Chat) -> Identity {
    Identity::chat(
        IdentitySource::Trusted,
        chat.requester.user_id.clone(),
        chat.requester.user_name.clone(),
    )
}

/// The hubot-deploy compatible `payload` (README, "Production: chima on GitHub, faseng behind it"): heaven-era
/// consumers read `name`, `hosts`, `notify` and `config` from it. chima's signed
/// request is added once the ref is known (GitHub mode).
pub fn payload(request: &DeploymentRequest, chat: &Chat, robot: &str) -> DeploymentPayload {
    DeploymentPayload {
        name: Some(request.app.clone()),
        robot_name: Some(robot.to_string()),
        hosts: request.hosts.clone().unwrap_or_default(),
        yubikey: request.yubikey.clone(),
        notify: Some(Notify {
            adapter: Some(chat.adapter.to_string()),
            room: Some(chat.room.clone()),
            user: Some(
                chat.requester
                    .user_id
                    .clone()
                    .unwrap_or_else(|| chat.requester.user_name.clone()),
            ),
            user_name: Some(chat.requester.user_name.clone()),
            thread_ts: chat.thread_ts.clone(),
        }),
        config: Some(request.config.clone()),
        ..Default::default()
    }
}

/// The payload as the in-process engine stores it: with the notes faseng's intake
/// would write (who asked, where to answer), which chima vouches for itself here.
pub fn local_payload(payload: &DeploymentPayload, chat: &Chat) -> Value {
    let notes = FasengNotes {
        delivery: None,
        identity: identity(chat),
        chat: Some(ChatTarget {
            adapter: chat.adapter.to_string(),
            room: chat.room.clone(),
            thread_ts: chat.thread_ts.clone(),
        }),
        notes: Vec::new(),
    };
    DeploymentPayload::with_notes(&payload.to_value(), &notes)
}

/// Replies with a refusal from the config checks.
pub fn refuse(to: &Say, refusal: &Refusal) -> Ending {
    say(to, refusal.to_string());
    match refusal {
        Refusal::UnknownApp { .. } | Refusal::UnknownEnvironment { .. } => Ending::Usage,
        Refusal::RoomNotAllowed { .. } | Refusal::UserNotAllowed { .. } => Ending::Failed,
    }
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
        format!("{name} autodeploy <app> [in <env> on|off [reason]] - auto-deploy on green CI: state, pause, resume"),
        format!("{name} deploy:version - my version"),
        format!("{name} help - this list"),
    ]
    .join("\n")
}

/// One line of `deploys`: state, what, who, short sha, duration or age.
pub fn summary(d: &chima_store::Deployment) -> String {
    use chima_store::DeploymentState;
    let why = match (d.state, &d.reason) {
        (DeploymentState::Succeeded, _) | (_, None) => String::new(),
        (_, Some(r)) => format!(": {r}"),
    };
    let took = match (d.started_at, d.finished_at) {
        (Some(s), Some(f)) => format!(", took {}", human((f - s).num_seconds())),
        (Some(s), None) => format!(
            ", running for {}",
            human((chrono::Utc::now() - s).num_seconds())
        ),
        _ => String::new(),
    };
    let auto = d
        .payload
        .pointer("/auto_deploy/contexts")
        .and_then(|c| c.as_array())
        .map(|c| {
            let names: Vec<&str> = c.iter().filter_map(|v| v.as_str()).collect();
            format!(" [auto-deploy: {} green]", names.join(", "))
        })
        .unwrap_or_default();
    format!(
        "#{} {} {}/{} to {} by {} ({}{took}){why}{auto}",
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
    )
}

/// `42s`, `3m`, `2h`, `5d`.
pub fn human(secs: i64) -> String {
    let s = secs.max(0);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{}s", s / 60, s % 60),
        3600..86400 => format!("{}h{}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d", s / 86400),
    }
}

/// `lock app in env for 2h db work`: the expiry, when the reason starts with
/// `for <duration>`, and the rest of the reason.
pub fn lock_expiry(reason: Option<&str>) -> (Option<std::time::Duration>, Option<String>) {
    let Some(r) = reason else { return (None, None) };
    let mut words = r.split_whitespace();
    if let (Some("for"), Some(d)) = (words.next(), words.next())
        && let Ok(d) = chima_config::parse_duration(d)
    {
        let rest: Vec<&str> = words.collect();
        return (Some(d), (!rest.is_empty()).then(|| rest.join(" ")));
    }
    (None, Some(r.to_string()))
}

/// One environment's auto-deploy state, for `autodeploy <app>` and `where`.
pub fn autodeploy_line(
    env: &str,
    rule: &chima_config::AutoDeployRule,
    pause: Option<&chima_store::AutoDeployPause>,
    last: Option<&chima_store::AutoDeploy>,
) -> String {
    let what = format!(
        "deploys the head of {} when {} green",
        rule.git_ref.as_deref().unwrap_or("the default branch"),
        rule.required_contexts
            .as_ref()
            .map(|c| format!("{} are", c.join(", ")))
            .unwrap_or_else(|| "every reported context is".to_string())
    );
    let state = match pause {
        Some(p) => format!(
            "off (paused by {}{})",
            p.paused_by,
            p.reason
                .as_deref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default()
        ),
        None => "on".to_string(),
    };
    let shipped = match last {
        Some(l) => format!(
            "; last shipped {} on {} ({})",
            &l.sha[..l.sha.len().min(7)],
            l.created_at.format("%Y-%m-%d %H:%M UTC"),
            l.contexts
        ),
        None => "; nothing shipped yet".to_string(),
    };
    format!("  {env}: auto-deploy {state}, {what}{shipped}")
}

/// Where auto-deploy pauses live: the local store (embedded) or faseng's API.
#[async_trait::async_trait]
pub trait AutoDeploySwitch: Sync {
    async fn pause(
        &self,
        app: &str,
        env: &str,
        by: &str,
        reason: Option<&str>,
    ) -> anyhow::Result<()>;
    async fn resume(
        &self,
        app: &str,
        env: &str,
    ) -> anyhow::Result<Option<chima_store::AutoDeployPause>>;
    async fn state(
        &self,
        app: &str,
        env: &str,
    ) -> anyhow::Result<(
        Option<chima_store::AutoDeployPause>,
        Option<chima_store::AutoDeploy>,
    )>;
}

/// `autodeploy <app> [in <env> on|off [reason]]`, the same in both modes.
#[allow(clippy::too_many_arguments)]
pub async fn autodeploy(
    apps: &Apps,
    default_env: &str,
    switch: &dyn AutoDeploySwitch,
    app: &str,
    env: Option<String>,
    enabled: Option<bool>,
    reason: Option<String>,
    user: &str,
    to: &Say,
) -> anyhow::Result<Ending> {
    let a = match apps.app(app) {
        Ok(a) => a,
        Err(r) => return Ok(refuse(to, &r)),
    };
    if let (Some(env), Some(on)) = (env, enabled) {
        let t = match apps.target(app, Some(&env), default_env) {
            Ok(t) => t,
            Err(r) => return Ok(refuse(to, &r)),
        };
        let (name, env) = (&a.name, t.environment);
        if !a.auto_deploy.contains_key(env) {
            say(
                to,
                format!("{name} has no auto-deploy for {env} in app.json; nothing to switch."),
            );
            return Ok(Ending::Failed);
        }
        if on {
            let text = match switch.resume(name, env).await? {
                Some(p) => format!(
                    "Auto-deploy of {name} to {env} is on again (it was paused by {}).",
                    p.paused_by
                ),
                None => format!("Auto-deploy of {name} to {env} was already on."),
            };
            say(to, text);
        } else {
            switch.pause(name, env, user, reason.as_deref()).await?;
            say(
                to,
                format!(
                    "Auto-deploy of {name} to {env} is off{}. Say `autodeploy {name} in {env} on` to resume.",
                    reason.map(|r| format!(": {r}")).unwrap_or_default()
                ),
            );
        }
        return Ok(Ending::Ok);
    }
    if a.auto_deploy.is_empty() {
        say(to, format!("{} has no auto-deploy in app.json.", a.name));
        return Ok(Ending::Ok);
    }
    let mut lines = vec![format!("Auto-deploy of {}:", a.name)];
    for (env, rule) in &a.auto_deploy {
        let (pause, last) = switch.state(&a.name, env).await?;
        lines.push(autodeploy_line(env, rule, pause.as_ref(), last.as_ref()));
    }
    say(to, lines.join("\n"));
    Ok(Ending::Ok)
}

/// Locks and cancel, wherever they live: the local store (embedded) or
/// faseng's API. The replies are the same either way.
#[async_trait::async_trait]
pub trait EnvOps: Sync {
    /// Locks for `holder` (a name), identified by `holder_id` (an identity key).
    async fn lock(
        &self,
        app: &str,
        env: &str,
        holder: &str,
        holder_id: &str,
        reason: Option<&str>,
        expires_in: Option<std::time::Duration>,
    ) -> anyhow::Result<chima_store::LockResult>;
    async fn unlock(&self, app: &str, env: &str) -> anyhow::Result<Option<chima_store::Lock>>;
    async fn cancel(
        &self,
        app: &str,
        env: &str,
        by: &str,
    ) -> anyhow::Result<chima_engine::ops::Cancelled>;
}

/// `lock`, `unlock` and `cancel`; `None` for other commands.
pub async fn env_command(
    apps: &Apps,
    default_env: &str,
    ops: &dyn EnvOps,
    command: &Command,
    who: &Identity,
    to: &Say,
) -> anyhow::Result<Option<Ending>> {
    let user = who.display();
    let user = user.as_str();
    use chima_engine::ops::Cancelled;
    use chima_store::LockResult;
    let (app, env) = match command {
        Command::Lock { app, env, .. }
        | Command::Unlock { app, env }
        | Command::Cancel { app, env } => (app, env),
        _ => return Ok(None),
    };
    let t = match apps.target(app, Some(env), default_env) {
        Ok(t) => t,
        Err(r) => return Ok(Some(refuse(to, &r))),
    };
    let (app, env) = (t.app.name.as_str(), t.environment);
    let ending = match command {
        Command::Lock { reason, .. } => {
            let (expiry, reason) = lock_expiry(reason.as_deref());
            match ops
                .lock(app, env, user, &who.key(), reason.as_deref(), expiry)
                .await?
            {
                LockResult::Acquired(l) => {
                    say(
                        to,
                        format!(
                            "Locked {app} in {env}{}{}. Others cannot deploy there until `unlock {app} in {env}`.",
                            l.reason.map(|r| format!(": {r}")).unwrap_or_default(),
                            l.expires_at
                                .map(|e| format!(" (until {})", e.format("%Y-%m-%d %H:%M UTC")))
                                .unwrap_or_default(),
                        ),
                    );
                    Ending::Ok
                }
                LockResult::HeldBy(l) => {
                    say(
                        to,
                        format!(
                            "{app} in {env} is already locked by {}: {}.",
                            l.holder,
                            l.reason.as_deref().unwrap_or("no reason given")
                        ),
                    );
                    Ending::Failed
                }
            }
        }
        Command::Unlock { .. } => {
            let text = match ops.unlock(app, env).await? {
                Some(l) if l.held_by(&who.key(), user) => format!("Unlocked {app} in {env}."),
                Some(l) => format!(
                    "Unlocked {app} in {env}. {}, your lock was lifted by {user}.",
                    l.holder
                ),
                None => format!("{app} in {env} was not locked; nothing to do."),
            };
            say(to, text);
            Ending::Ok
        }
        _ => match ops.cancel(app, env, user).await? {
            Cancelled::Dequeued(d) => {
                say(
                    to,
                    format!(
                        "Cancelled deployment #{} of {}/{} to {} before it started.",
                        d.id, d.app, d.git_ref, d.environment
                    ),
                );
                Ending::Ok
            }
            Cancelled::Stopping(d) => {
                say(
                    to,
                    format!(
                        "Stopping deployment #{} of {}/{} to {}: its processes are being killed.",
                        d.id, d.app, d.git_ref, d.environment
                    ),
                );
                Ending::Ok
            }
            Cancelled::Nothing => {
                say(
                    to,
                    format!("Nothing is running or queued for {app} in {env}; nothing to cancel."),
                );
                Ending::Failed
            }
        },
    };
    Ok(Some(ending))
}

fn is_env_command(c: &Command) -> bool {
    matches!(
        c,
        Command::Lock { .. } | Command::Unlock { .. } | Command::Cancel { .. }
    )
}
