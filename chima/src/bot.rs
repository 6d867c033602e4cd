//! The bot's core, the one command path: one chat line in, replies out,
//! whatever the transport (terminal, Slack) and whatever the [`Backend`] (the
//! in-process engine, or GitHub Deployments with faseng behind them). Every line
//! addressed to the bot gets a reply that says what was done, or why nothing was.
//! The texts are [`crate::replies`]'s.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use chima_api_types::{FreezeRequest, LockRequest, PauseRequest};
use chima_command::{Addressee, Command, DEFAULT_FREEZE, FreezeEnd, MAX_FREEZE, ParseError, parse};
use chima_config::{App, Apps, DeploymentRequest, Refusal, Requester, Zone, is_dry_run};
use chima_engine::policy::{self, Blocked};
use chima_payload::{DeploymentPayload, Identity, IdentitySource, Notify};
use chima_store::{Decided, Decision, DeploymentState, LockResult};
use chima_store::{EVERY, Freeze};
use tokio::sync::mpsc::UnboundedSender;

use crate::backend::{Backend, Created, GitHubFailed, History};
use crate::replies;

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
/// (<https://api.slack.com/interactivity/handling#message_responses>).
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

pub struct Bot {
    pub addressee: Addressee,
    pub apps: Arc<Apps>,
    pub default_env: String,
    pub backend: Box<dyn Backend>,
}

/// Replies with `text` and ends with `ending`.
fn reply(to: &Say, text: impl Into<String>, ending: Ending) -> anyhow::Result<Ending> {
    say(to, text);
    Ok(ending)
}

/// Unwraps a config lookup, or replies with its refusal and returns.
macro_rules! or_refuse {
    ($to:expr, $e:expr) => {
        match $e {
            Ok(v) => v,
            Err(r) => return Ok(refuse($to, &r)),
        }
    };
}

impl Bot {
    /// Handles one line. `follow`: for the terminal, print the deployment's
    /// progress and log until it ends (local backend only).
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
        if let Some(text) = self.backend.unavailable(&command) {
            say(to, text);
            return Ending::Usage;
        }
        match self.run(command, chat, to, follow).await {
            Ok(ending) => ending,
            Err(e) => {
                if let Some(f) = e.downcast_ref::<GitHubFailed>() {
                    say(to, replies::github_error(&f.error, &f.repo));
                    return Ending::Failed;
                }
                tracing::error!(error = %format!("{e:#}"), "command failed");
                say(to, replies::went_wrong(&e));
                Ending::Failed
            }
        }
    }

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

    /// One command, whichever backend.
    async fn run(
        &self,
        command: Command,
        chat: &Chat,
        to: &Say,
        follow: bool,
    ) -> anyhow::Result<Ending> {
        let (apps, default_env, backend) = (&self.apps, self.default_env.as_str(), &self.backend);
        let who = identity(chat);
        let user = who.display();
        match command {
            Command::Help => reply(to, replies::help(&self.addressee.name), Ending::Ok),
            Command::Approve { id } => {
                let answer = backend.decide(id, &who, Decision::Approve, None).await?;
                self.decided(answer, &user, to)
            }
            Command::Reject { id, reason } => {
                let answer = backend
                    .decide(id, &who, Decision::Reject, reason.as_deref())
                    .await?;
                self.decided(answer, &user, to)
            }
            Command::Version => reply(to, replies::version(), Ending::Ok),
            Command::Deploy(d) => {
                let request = or_refuse!(to, apps.resolve_deploy(&d, &chat.requester, default_env));
                // A dry run (`deploy:noop`) changes nothing: another user's lock does not
                // stop it (its permission was checked above, as for a deploy). A Heroku
                // app has none: refused before anything is created.
                let dry_run = chima_config::is_dry_run(&request.task);
                if dry_run
                    && apps.app(&request.app).is_ok_and(|a| {
                        a.command.is_none() && a.provider == chima_config::Provider::Heroku
                    })
                {
                    return reply(to, replies::heroku_no_dry_run(&request.app), Ending::Failed);
                }
                // Windows and freezes, before anything is created (the engine checks
                // again when it runs the deployment, whoever created it).
                let blocked = self
                    .blocked(&request.app, &request.environment, &request.task)
                    .await?;
                match (&blocked, &request.emergency) {
                    (Some(b), None) => {
                        return reply(
                            to,
                            replies::blocked(&request.app, &request.environment, b),
                            Ending::Failed,
                        );
                    }
                    (b, Some(reason)) => say(
                        to,
                        replies::breaking_glass(&user, &request.environment, reason, b.as_ref()),
                    ),
                    (None, None) => {}
                }
                if !dry_run
                    && let Some(lock) = backend.lock_of(&request.app, &request.environment).await?
                    && !lock.held_by(&who.key(), &chat.requester.user_name)
                {
                    return reply(
                        to,
                        replies::locked_out(&request.environment, &lock),
                        Ending::Failed,
                    );
                }
                let payload = payload(&request, chat, &self.addressee.name);
                let created = backend.create(&request, payload, chat).await?;
                self.created(created, to, follow).await
            }
            Command::Deploys { app, env, .. } => {
                let (a, env) = match &env {
                    Some(e) => {
                        let t = or_refuse!(to, apps.target(&app, Some(e), default_env));
                        (t.app, Some(t.environment))
                    }
                    None => (or_refuse!(to, apps.app(&app)), None),
                };
                let text = match backend.history(a, env).await? {
                    History::Stored(list, approvals) => replies::history(&app, &list, &approvals),
                    History::GitHub(list) => replies::github_history(&app, &list),
                };
                reply(to, text, Ending::Ok)
            }
            Command::Where { app } => {
                let app = or_refuse!(to, apps.app(&app));
                let mut lines = vec![replies::where_head(&app.name)];
                let freezes = backend.freezes().await?;
                let now = chrono::Utc::now();
                for env in &app.environments {
                    let lock = backend.lock_of(&app.name, &env.name).await?;
                    lines.push(replies::where_env(&env.name, lock.as_ref()));
                    if let Some(w) = app.windows.get(&env.name) {
                        let opens = w.next_opening(now).map(|t| w.timezone.say(t, now));
                        lines.push(replies::where_windows(&w.describe(), w.is_open(now), opens));
                    }
                    let zone = app.zone(&env.name);
                    for f in freezes.iter().filter(|f| f.covers(&app.name, &env.name)) {
                        lines.push(replies::where_freeze(f, &zone));
                    }
                    if let Some(rule) = app.auto_deploy.get(&env.name) {
                        let (pause, last) = backend.autodeploy_state(&app.name, &env.name).await?;
                        lines.push(replies::autodeploy_line(
                            &env.name,
                            rule,
                            pause.as_ref(),
                            last.as_ref(),
                        ));
                    }
                }
                reply(to, lines.join("\n"), Ending::Ok)
            }
            Command::Lock {
                app,
                env,
                expires_in,
                reason,
            } => {
                let t = or_refuse!(to, apps.target(&app, Some(&env), default_env));
                let (app, env) = (t.app.name.as_str(), t.environment);
                let ask = LockRequest {
                    holder: user.clone(),
                    holder_id: Some(who.key()),
                    reason,
                    expires_in: expires_in.map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX)),
                };
                match backend.lock(app, env, &ask).await? {
                    LockResult::Acquired(l) => reply(to, replies::locked(app, env, &l), Ending::Ok),
                    LockResult::HeldBy(l) => {
                        reply(to, replies::already_locked(app, env, &l), Ending::Failed)
                    }
                }
            }
            Command::Unlock { app, env } => {
                let t = or_refuse!(to, apps.target(&app, Some(&env), default_env));
                let (app, env) = (t.app.name.as_str(), t.environment);
                let was = backend.unlock(app, env).await?;
                let yours = was.as_ref().is_some_and(|l| l.held_by(&who.key(), &user));
                reply(
                    to,
                    replies::unlocked(app, env, was.as_ref(), yours, &user),
                    Ending::Ok,
                )
            }
            Command::Cancel { app, env } => {
                let t = or_refuse!(to, apps.target(&app, Some(&env), default_env));
                let (app, env) = (t.app.name.as_str(), t.environment);
                let cancelled = backend.cancel(app, env, &user).await?;
                let ending = match cancelled {
                    chima_engine::ops::Cancelled::Nothing => Ending::Failed,
                    _ => Ending::Ok,
                };
                reply(to, replies::cancelled(app, env, &cancelled), ending)
            }
            Command::Rollback { app, env } => {
                let t = or_refuse!(to, apps.target(&app, Some(&env), default_env));
                let (app, env) = (t.app.name.as_str(), t.environment);
                if let Some(b) = self.blocked(app, env, "deploy").await? {
                    return reply(to, replies::blocked(app, env, &b), Ending::Failed);
                }
                let r = match backend.rollback_target(app, env).await? {
                    Ok(r) => r,
                    Err(chima_engine::ops::NoRollback::NeverDeployed) => {
                        return reply(to, replies::no_rollback(app, env, None), Ending::Failed);
                    }
                    Err(chima_engine::ops::NoRollback::NothingBefore(c)) => {
                        return reply(to, replies::no_rollback(app, env, Some(&c)), Ending::Failed);
                    }
                };
                say(to, replies::rolling_back(&r.current, &r.target));
                if r.target.sha.is_none() {
                    return Ok(Ending::Failed);
                }
                let created = backend.redeploy(apps, &r.target, chat).await?;
                self.created(created, to, false).await
            }
            Command::Freeze {
                app,
                env,
                ends,
                reason,
            } => {
                let scope = match self.freeze_scope(app.as_deref(), env.as_deref(), &chat.requester)
                {
                    Ok(s) => s,
                    Err(Scoped::Refused(r)) => return Ok(refuse(to, &r)),
                    Err(Scoped::Text(t)) => return reply(to, t, Ending::Usage),
                };
                let now = chrono::Utc::now();
                let ends_at = match ends_at(ends, &scope.zone, now) {
                    Ok(t) => t,
                    Err(why) => return reply(to, why, Ending::Usage),
                };
                let ask = FreezeRequest {
                    by: user.clone(),
                    by_id: Some(who.key()),
                    reason,
                    ends_at,
                };
                let f = backend.freeze(&scope.app, &scope.env, &ask).await?;
                reply(to, replies::frozen(&f, &scope.zone), Ending::Ok)
            }
            Command::Unfreeze { app, env } => {
                let scope = match self.freeze_scope(app.as_deref(), env.as_deref(), &chat.requester)
                {
                    Ok(s) => s,
                    Err(Scoped::Refused(r)) => return Ok(refuse(to, &r)),
                    Err(Scoped::Text(t)) => return reply(to, t, Ending::Usage),
                };
                let lifted = backend
                    .unfreeze(&scope.app, env.as_ref().map(|_| scope.env.as_str()))
                    .await?;
                // What still covers the scope: freezes of a wider one.
                let still: Vec<(Freeze, Zone)> = backend
                    .freezes()
                    .await?
                    .into_iter()
                    .filter(|f| scope.pairs.iter().any(|(a, e)| f.covers(a, e)))
                    .map(|f| (f, scope.zone.clone()))
                    .collect();
                let what = replies::freeze_scope(&scope.app, &scope.env);
                reply(
                    to,
                    replies::unfrozen(&what, &lifted, &still, &user),
                    Ending::Ok,
                )
            }
            Command::Status { app, git_ref } => {
                let a = or_refuse!(to, apps.app(&app));
                let git_ref = git_ref.or_else(|| a.default_ref.clone());
                let (git_ref, ci) = backend.ci_status(a, git_ref).await?;
                reply(to, replies::ci_status(&app, &git_ref, &ci), Ending::Ok)
            }
            Command::AutoDeploy {
                app,
                env,
                enabled,
                reason,
            } => {
                let a = or_refuse!(to, apps.app(&app));
                let Some((env, on)) = env.zip(enabled) else {
                    if a.auto_deploy.is_empty() {
                        return reply(to, replies::no_autodeploy(&a.name), Ending::Ok);
                    }
                    let mut lines = vec![replies::autodeploy_head(&a.name)];
                    for (env, rule) in &a.auto_deploy {
                        let (pause, last) = backend.autodeploy_state(&a.name, env).await?;
                        lines.push(replies::autodeploy_line(
                            env,
                            rule,
                            pause.as_ref(),
                            last.as_ref(),
                        ));
                    }
                    return reply(to, lines.join("\n"), Ending::Ok);
                };
                let t = or_refuse!(to, apps.target(&app, Some(&env), default_env));
                let (name, env) = (&a.name, t.environment);
                if !a.auto_deploy.contains_key(env) {
                    return reply(to, replies::no_autodeploy_for(name, env), Ending::Failed);
                }
                let text = if on {
                    let was = backend.set_autodeploy(name, env, None).await?;
                    replies::autodeploy_resumed(name, env, was.as_ref())
                } else {
                    let text = replies::autodeploy_paused(name, env, reason.as_deref());
                    let off = PauseRequest {
                        by: chat.requester.user_name.clone(),
                        reason,
                    };
                    backend.set_autodeploy(name, env, Some(&off)).await?;
                    text
                };
                reply(to, text, Ending::Ok)
            }
        }
    }

    /// Why a deployment of `task` to app+env may not start now (a freeze the backend
    /// knows of, or app.json's windows); `None` for a dry run.
    async fn blocked(&self, app: &str, env: &str, task: &str) -> anyhow::Result<Option<Blocked>> {
        let Some(a) = self.apps.get(app) else {
            return Ok(None);
        };
        if is_dry_run(task) {
            return Ok(None);
        }
        let now = chrono::Utc::now();
        let freezes = self.backend.freezes().await?;
        Ok(policy::frozen(a, env, &freezes, now).or_else(|| policy::closed(a, env, now)))
    }

    /// The scope of `freeze`/`unfreeze` as stored (`*` for every app or environment),
    /// the app+environment pairs it covers, and the timezone its times are said in;
    /// or why not. Freezing stops everyone's deploys there, so it needs the permission
    /// to deploy to every environment it covers (`allowed_rooms`, `allowed_users`):
    /// `freeze all` only for who may deploy everywhere it reaches.
    fn freeze_scope(
        &self,
        app: Option<&str>,
        env: Option<&str>,
        who: &Requester,
    ) -> Result<FreezeScope, Scoped> {
        let apps: Vec<&App> = match app {
            Some(a) => vec![self.apps.app(a).map_err(Scoped::Refused)?],
            None => self.apps.iter().collect(),
        };
        let mut pairs = Vec::new();
        let stored_env = match (app, env) {
            (Some(_), Some(e)) => {
                let t = self
                    .apps
                    .target(apps[0].name.as_str(), Some(e), &self.default_env)
                    .map_err(Scoped::Refused)?;
                pairs.push((t.app.name.clone(), t.environment.to_string()));
                t.environment.to_string()
            }
            (None, Some(e)) => {
                for a in &apps {
                    if a.environment(e).is_some() {
                        pairs.push((a.name.clone(), e.to_string()));
                    }
                }
                if pairs.is_empty() {
                    let mut known: Vec<String> =
                        apps.iter().flat_map(|a| a.environment_names()).collect();
                    known.sort();
                    known.dedup();
                    return Err(Scoped::Text(format!(
                        "No app has an environment `{e}`. Environments: {}.",
                        known.join(", ")
                    )));
                }
                e.to_string()
            }
            (_, None) => {
                for a in &apps {
                    for e in a.environment_names() {
                        pairs.push((a.name.clone(), e));
                    }
                }
                EVERY.to_string()
            }
        };
        for (a, e) in &pairs {
            let t = self
                .apps
                .target(a, Some(e), &self.default_env)
                .map_err(Scoped::Refused)?;
            self.apps
                .check_permissions(t, who)
                .map_err(Scoped::Refused)?;
        }
        // One timezone when every covered environment with windows shares it; else UTC.
        let mut zones: Vec<Zone> = pairs
            .iter()
            .filter_map(|(a, e)| self.apps.get(a).and_then(|a| a.windows.get(e)))
            .map(|w| w.timezone.clone())
            .collect();
        zones.dedup();
        let zone = match zones.as_slice() {
            [one]
                if pairs
                    .iter()
                    .all(|(a, e)| self.apps.get(a).is_some_and(|a| a.windows.contains_key(e))) =>
            {
                one.clone()
            }
            _ => Zone::utc(),
        };
        Ok(FreezeScope {
            app: app
                .map(|_| apps[0].name.clone())
                .unwrap_or_else(|| EVERY.to_string()),
            env: stored_env,
            pairs,
            zone,
        })
    }

    /// Says what an approve or reject did, or why it was refused.
    fn decided(
        &self,
        answer: Result<Decided, String>,
        user: &str,
        to: &Say,
    ) -> anyhow::Result<Ending> {
        match answer {
            Ok(decided) => reply(to, replies::decided(&decided, user), Ending::Ok),
            Err(refusal) => reply(to, refusal, Ending::Failed),
        }
    }

    /// Says what creating a deployment did; for a queued one with `follow`, its
    /// news until it ends.
    async fn created(&self, created: Created, to: &Say, follow: bool) -> anyhow::Result<Ending> {
        match created {
            Created::Queued(d) => {
                say(to, replies::queued(&d));
                if !follow {
                    return Ok(Ending::Ok);
                }
                Ok(match self.backend.follow(d.id, to).await? {
                    Some(done) if done.state != DeploymentState::Succeeded => Ending::Failed,
                    _ => Ending::Ok,
                })
            }
            Created::OnGitHub {
                app,
                environment,
                git_ref,
                task,
                outcome,
            } => {
                let (text, ok) =
                    replies::github_created(&app, &git_ref, &environment, &task, &outcome);
                reply(to, text, if ok { Ending::Ok } else { Ending::Failed })
            }
        }
    }
}

/// What a `freeze` or `unfreeze` covers.
struct FreezeScope {
    /// The app, or `*`.
    app: String,
    /// The environment, or `*`.
    env: String,
    /// Every app+environment it covers.
    pairs: Vec<(String, String)>,
    /// The timezone its times are said in.
    zone: Zone,
}

/// Why a freeze scope is refused.
enum Scoped {
    Refused(Refusal),
    Text(String),
}

/// When a freeze placed at `now` ends: `for` from now, `until` in `zone` (a time
/// alone: the next time the clock shows it), else [`DEFAULT_FREEZE`]; within
/// [`MAX_FREEZE`].
fn ends_at(
    ends: Option<FreezeEnd>,
    zone: &Zone,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<chrono::DateTime<chrono::Utc>, String> {
    let longest = chrono::Duration::from_std(MAX_FREEZE).unwrap_or(chrono::Duration::days(90));
    let t = match ends {
        None => {
            now + chrono::Duration::from_std(DEFAULT_FREEZE).unwrap_or(chrono::Duration::days(1))
        }
        Some(FreezeEnd::For(d)) => now + chrono::Duration::from_std(d).unwrap_or(longest),
        Some(FreezeEnd::Until(u)) => {
            let (h, m) = u.time.unwrap_or((0, 0));
            let t = match u.date {
                Some(date) => zone.at(date, h, m)?,
                None => {
                    let today = zone.at(zone.date_of(now), h, m)?;
                    if today > now {
                        today
                    } else {
                        zone.at(zone.date_of(now + chrono::Duration::days(1)), h, m)?
                    }
                }
            };
            if t <= now {
                return Err(format!(
                    "{u} ({}) has passed: a freeze must end in the future. Nothing was frozen.",
                    zone.name()
                ));
            }
            t
        }
    };
    if t > now + longest {
        return Err("A freeze lasts at most 90 days. Nothing was frozen.".to_string());
    }
    Ok(t)
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

/// Replies with a refusal from the config checks.
pub fn refuse(to: &Say, refusal: &Refusal) -> Ending {
    say(to, refusal.to_string());
    match refusal {
        Refusal::UnknownApp { .. } | Refusal::UnknownEnvironment { .. } => Ending::Usage,
        Refusal::RoomNotAllowed { .. } | Refusal::UserNotAllowed { .. } => Ending::Failed,
    }
}
