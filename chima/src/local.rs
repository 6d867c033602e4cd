//! The local backend: no GitHub. Deployments go to the same store and engine
//! faseng uses, in this process (an SQLite file by default).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use chima_api_types::{FreezeRequest, LockRequest, PauseRequest};
use chima_command::Command;
use chima_config::{App, Apps, DeploymentRequest};
use chima_engine::ops::Cancelled;
use chima_engine::{Engine, EngineConfig};
use chima_github::CiState;
use chima_outbox::deliver::{Deliver, Event, Outcome};
use chima_payload::{ChatTarget, DeploymentPayload, FasengNotes};
use chima_store::{Deployment, Freeze, Lock, LockResult, NewDeployment, Store};
use serde_json::Value;
use tokio::sync::{mpsc, watch};

use crate::backend::{
    AutoDeployNow, Backend, Created, DecideAnswer, History, RollbackTo, Switched,
};
use crate::bot::{Chat, Say, identity, say};
use crate::replies;

pub struct Local {
    pub store: Arc<dyn Store>,
    /// chima's app.json: which environments wait for approvals, and who may give them,
    /// and the `notify_room` a break-glass deployment is announced in.
    apps: Arc<Apps>,
    engine: tokio::sync::Mutex<Option<Engine>>,
    /// The engine's settings, until it is started (see [`Local::ensure_running`]).
    cfg: EngineConfig,
    /// With [`ChatOut::Here`]: the chat notifications the outbox loop delivered to
    /// this process, for [`Backend::follow`] to say in order with the log.
    delivered: Option<tokio::sync::Mutex<mpsc::UnboundedReceiver<Delivered>>>,
    /// With [`ChatOut::Here`]: the deliverer the outbox loop is started with.
    hand_over: Option<mpsc::UnboundedSender<Delivered>>,
    /// The deployments this process created, for [`Backend::stop`].
    created: std::sync::Mutex<Vec<i64>>,
    /// Stops the outbox loop of [`ChatOut::Here`], once started.
    outbox: tokio::sync::Mutex<Option<(watch::Sender<bool>, tokio::task::JoinHandle<()>)>>,
}

/// Who delivers the local engine's chat notifications.
pub enum ChatOut {
    /// This backend, to whoever follows a deployment (the terminal): the outbox loop
    /// hands them to [`Backend::follow`], which says them between log lines. The
    /// engine and the outbox loop start with the first deployment this process
    /// creates: a `chima run 'approve 12'` beside the waiting `chima run` of the
    /// requester takes neither the deployment nor its messages from it.
    Here,
    /// A chat transport that runs the outbox loop over [`Local::store`] (Slack).
    Transport,
}

/// A chat event and its deployment as the outbox loop read it.
type Delivered = (Event, chima_outbox::deliver::Deployment);

/// The deliverer of [`ChatOut::Here`]: hands each chat event to `follow`.
struct HandOver(mpsc::UnboundedSender<Delivered>);

#[async_trait::async_trait]
impl Deliver for HandOver {
    fn target(&self) -> &str {
        "chat"
    }

    async fn deliver(&self, event: &Event, d: &chima_outbox::deliver::Deployment) -> Outcome {
        match self.0.send((event.clone(), d.clone())) {
            Ok(()) => Outcome::Delivered,
            Err(_) => Outcome::Skipped("nobody follows deployments any more".to_string()),
        }
    }
}

impl Local {
    /// Opens the store and starts the engine's workers.
    pub async fn start(
        apps: Arc<Apps>,
        apps_path: &Path,
        database_url: &str,
        workers: usize,
        lease: Duration,
        chat: ChatOut,
    ) -> anyhow::Result<Local> {
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
        // Checkouts and repository mirrors live next to the SQLite file, kept
        // with the deployments they belong to; the user's cache folder otherwise.
        if let Some(dir) = work_next_to(database_url) {
            match chima_engine::workdir::prepare(&dir) {
                Ok(()) => cfg.workdir = dir,
                Err(e) => tracing::warn!(
                    error = %e,
                    fallback = %cfg.workdir.display(),
                    "cannot keep the work folder next to the database file"
                ),
            }
        }
        // Providers run under a guard (this binary, `chima guard`), as in faseng.
        cfg.guard = chima_engine::GuardProgram::this_binary()
            .map_err(|e| tracing::warn!(error = %e, "cannot find chima's own binary; providers run unguarded"))
            .ok();
        let (engine, delivered, hand_over) = match chat {
            ChatOut::Transport => (Some(Engine::start(store.clone(), cfg.clone())), None, None),
            ChatOut::Here => {
                // No engine yet, so no claim yet: what a claim would end first (a dead
                // process's lapsed lease, a lapsed approval) is ended now, as any
                // chima on this store did before.
                if let Err(e) = store.reap_lapsed_leases().await {
                    tracing::warn!(error = %e, "cannot end deployments whose worker was lost");
                }
                if let Err(e) = store.expire_approvals().await {
                    tracing::warn!(error = %e, "cannot end deployments whose approval expired");
                }
                let (tx, rx) = mpsc::unbounded_channel();
                (None, Some(tokio::sync::Mutex::new(rx)), Some(tx))
            }
        };
        Ok(Local {
            store,
            apps,
            engine: tokio::sync::Mutex::new(engine),
            cfg,
            delivered,
            hand_over,
            created: std::sync::Mutex::new(Vec::new()),
            outbox: tokio::sync::Mutex::new(None),
        })
    }

    /// Remembers a deployment this process created (see [`Backend::stop`]).
    fn mine(&self, d: &Deployment) {
        if let Ok(mut mine) = self.created.lock() {
            mine.push(d.id);
        }
    }

    /// Starts the engine and (with [`ChatOut::Here`]) the outbox loop, unless they run.
    async fn ensure_running(&self) {
        let mut engine = self.engine.lock().await;
        if engine.is_none() {
            *engine = Some(Engine::start(self.store.clone(), self.cfg.clone()));
        }
        let mut outbox = self.outbox.lock().await;
        if let (None, Some(tx)) = (outbox.as_ref(), &self.hand_over) {
            let (stop, stopped) = watch::channel(false);
            let options = chima_outbox::OutboxOptions {
                // Someone watches the terminal.
                poll_interval: Duration::from_millis(100),
                ..chima_outbox::OutboxOptions::chat()
            };
            let run = chima_outbox::run(
                self.store.clone(),
                Arc::new(HandOver(tx.clone())),
                stopped,
                options,
            );
            *outbox = Some((stop, tokio::spawn(run)));
        }
    }
}

/// Says one delivered chat event. A break-glass deployment is also announced, as it
/// would be in the app's `notify_room` on Slack, with its first event.
fn notify((event, d): &Delivered, to: &Say, apps: &Apps) {
    if event.state == chima_outbox::deliver::DeploymentState::Queued
        && let Some(reason) = DeploymentPayload::emergency_of(&d.payload)
    {
        let text = replies::emergency_announcement(d, &reason);
        say(
            to,
            match apps.get(&d.app).and_then(|a| a.notify_room.clone()) {
                Some(room) => format!("[to #{room}] {text}"),
                None => format!("{text} (the app has no notify_room to announce it in)"),
            },
        );
    }
    let reason = event.payload.get("reason").and_then(Value::as_str);
    if let Some(text) = replies::notification(d, event.state, reason) {
        say(to, text);
    }
}

/// `<folder of the file>/<file stem>-work` for a SQLite file URL
/// (`sqlite://data/chima.db`: `data/chima-work`); `None` for another database
/// or an in-memory one.
fn work_next_to(database_url: &str) -> Option<std::path::PathBuf> {
    let rest = database_url
        .strip_prefix("sqlite://")
        .or_else(|| database_url.strip_prefix("sqlite:"))?;
    let file = rest.split('?').next().unwrap_or("");
    if file.is_empty() || file.contains(":memory:") || rest.contains("mode=memory") {
        return None;
    }
    let file = std::path::absolute(Path::new(file)).ok()?;
    let stem = file.file_stem()?.to_string_lossy().into_owned();
    Some(file.parent()?.join(format!("{stem}-work")))
}

/// A source key no other deployment has.
fn source_key(what: &str) -> String {
    format!(
        "chima-{what}-{}-{}",
        std::process::id(),
        chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default()
    )
}

/// The payload as the in-process engine stores it: with the notes faseng's intake
/// would write (who asked, where to answer, break-glass), which chima vouches for
/// itself here.
fn local_payload(payload: &DeploymentPayload, chat: &Chat, emergency: Option<String>) -> Value {
    let notes = FasengNotes {
        delivery: None,
        identity: identity(chat),
        chat: Some(ChatTarget {
            adapter: chat.adapter.to_string(),
            room: chat.room.clone(),
            thread_ts: chat.thread_ts.clone(),
        }),
        notes: Vec::new(),
        emergency,
    };
    DeploymentPayload::with_notes(&payload.to_value(), &notes)
}

#[async_trait::async_trait]
impl Backend for Local {
    fn mode(&self) -> &'static str {
        "embedded mode: deployments run here, stored in DATABASE_URL"
    }

    fn unavailable(&self, command: &Command) -> Option<String> {
        matches!(command, Command::Status { .. })
            .then(|| replies::not_in_local_mode(command.name()))
    }

    async fn create(
        &self,
        request: &DeploymentRequest,
        payload: DeploymentPayload,
        chat: &Chat,
    ) -> anyhow::Result<Created> {
        let git_ref = request
            .git_ref
            .clone()
            .unwrap_or_else(|| "HEAD".to_string());
        let source_key = source_key(chat.adapter);
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
            requester: chat.requester.user_name.clone(),
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
            payload: local_payload(&payload, chat, request.emergency.clone()),
            github_deployment_id: None,
            notify: vec!["chat".to_string()],
            timeout_secs: None,
        };
        self.ensure_running().await;
        let created =
            chima_engine::approval::create(self.store.as_ref(), Some(&self.apps), new).await?;
        self.mine(&created.deployment);
        Ok(Created::Queued(Box::new(created.deployment)))
    }

    async fn redeploy(&self, _apps: &Apps, d: &Deployment, chat: &Chat) -> anyhow::Result<Created> {
        let sha = d
            .sha
            .clone()
            .context("the deployment to redeploy has no sha")?;
        // The redeploy is this user's request: the old deployment's payload carries
        // the old requester's identity.
        let (mut sent, _) = DeploymentPayload::read(&d.payload);
        sent.faseng = None;
        let new = NewDeployment {
            source_key: source_key("rollback"),
            requester: chat.requester.user_name.clone(),
            app: d.app.clone(),
            environment: d.environment.clone(),
            repository: d.repository.clone(),
            git_ref: sha.clone(),
            sha: Some(sha),
            task: d.task.clone(),
            hosts: d.hosts.clone(),
            provider: d.provider.clone(),
            payload: local_payload(&sent, chat, None),
            github_deployment_id: None,
            notify: vec!["chat".to_string()],
            timeout_secs: d.timeout_secs,
        };
        self.ensure_running().await;
        let created =
            chima_engine::approval::create(self.store.as_ref(), Some(&self.apps), new).await?;
        self.mine(&created.deployment);
        Ok(Created::Queued(Box::new(created.deployment)))
    }

    /// Shows the deployment's chat notifications (as the outbox loop delivers them)
    /// and its log as they come, until it ends.
    async fn follow(&self, id: i64, to: &Say) -> anyhow::Result<Option<Deployment>> {
        let Some(delivered) = &self.delivered else {
            return Ok(None);
        };
        let mut delivered = delivered.lock().await;
        let mut seq = 0;
        // Delivered but held: how it ended is said after its last log line.
        let mut ending = Vec::new();
        loop {
            // Whether every chat event of the deployment is delivered, read first: an
            // event is handed over before it is marked delivered, so all of them are
            // in the channel when this says so.
            let notified = self
                .store
                .outbox_for_deployment(id)
                .await?
                .iter()
                .all(|e| e.target != "chat" || e.delivered_at.is_some());
            // News of the deployment as it comes, except how it ended.
            while let Ok(news) = delivered.try_recv() {
                if news.0.state.is_terminal() && news.0.deployment_id == id {
                    ending.push(news);
                } else {
                    notify(&news, to, &self.apps);
                }
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
                for news in ending.drain(..) {
                    notify(&news, to, &self.apps);
                }
                if notified {
                    return Ok(Some(d));
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn history(&self, app: &App, env: Option<&str>) -> anyhow::Result<History> {
        let list = chima_engine::ops::history(self.store.as_ref(), &app.name, env, 10).await?;
        let mut approvals = Vec::new();
        for d in list.iter().filter(|d| d.approvals_needed.is_some()) {
            approvals.extend(self.store.approvals(d.id).await?);
        }
        Ok(History::Stored(list, approvals))
    }

    async fn lock_of(&self, app: &str, env: &str) -> anyhow::Result<Option<Lock>> {
        Ok(self.store.get_lock(app, env).await?)
    }

    async fn lock(&self, app: &str, env: &str, ask: &LockRequest) -> anyhow::Result<LockResult> {
        let expires_at = ask
            .expires_in
            .map(|s| chrono::Utc::now() + chrono::TimeDelta::seconds(s));
        let (holder, reason) = (&ask.holder, ask.reason.as_deref());
        let holder_id = ask.holder_id.as_deref();
        Ok(self
            .store
            .lock_by(app, env, holder, holder_id, reason, expires_at)
            .await?)
    }

    async fn unlock(&self, app: &str, env: &str) -> anyhow::Result<Option<Lock>> {
        Ok(self.store.unlock(app, env).await?)
    }

    async fn freezes(&self) -> anyhow::Result<Vec<Freeze>> {
        Ok(self.store.list_freezes().await?)
    }

    async fn freeze(&self, app: &str, env: &str, ask: &FreezeRequest) -> anyhow::Result<Freeze> {
        Ok(self
            .store
            .freeze(
                app,
                env,
                &ask.by,
                ask.by_id.as_deref(),
                ask.reason.as_deref(),
                ask.ends_at,
            )
            .await?)
    }

    async fn unfreeze(&self, app: &str, env: Option<&str>) -> anyhow::Result<Vec<Freeze>> {
        Ok(self.store.unfreeze(app, env).await?)
    }

    async fn cancel(&self, app: &str, env: &str, by: &str) -> anyhow::Result<Cancelled> {
        Ok(chima_engine::ops::cancel(self.store.as_ref(), app, env, by).await?)
    }

    async fn rollback_target(&self, app: &str, env: &str) -> anyhow::Result<RollbackTo> {
        Ok(chima_engine::ops::rollback_target(self.store.as_ref(), app, env).await?)
    }

    async fn set_autodeploy(&self, app: &str, env: &str, off: Option<&PauseRequest>) -> Switched {
        Ok(match off {
            Some(p) => Some(
                self.store
                    .pause_auto_deploy(app, env, &p.by, p.reason.as_deref())
                    .await?,
            ),
            None => self.store.resume_auto_deploy(app, env).await?,
        })
    }

    async fn decide(
        &self,
        id: i64,
        who: &chima_payload::Identity,
        decision: chima_store::Decision,
        reason: Option<&str>,
    ) -> DecideAnswer {
        match chima_engine::approval::decide(
            self.store.as_ref(),
            &self.apps,
            id,
            who,
            decision,
            reason,
        )
        .await
        {
            Ok(decided) => Ok(Ok(decided)),
            Err(r) if r.is_failure() => Err(anyhow::anyhow!("{r}")),
            Err(r) => Ok(Err(r.to_string())),
        }
    }

    async fn autodeploy_state(&self, app: &str, env: &str) -> anyhow::Result<AutoDeployNow> {
        Ok((
            self.store.auto_deploy_pause(app, env).await?,
            self.store.last_auto_deploy(app, env).await?,
        ))
    }

    async fn ci_status(
        &self,
        _app: &App,
        _git_ref: Option<String>,
    ) -> anyhow::Result<(String, CiState)> {
        bail!("CI states come from GitHub, which the embedded mode does not use")
    }

    async fn stop(&self) {
        if let Some(engine) = self.engine.lock().await.take() {
            // What this process queued and did not follow (a rollback) is claimed
            // before the engine stops, so that it runs here and does not wait for the
            // next chima that deploys: the engine starts on demand now.
            let mine = self.created.lock().map(|m| m.clone()).unwrap_or_default();
            let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
            'wait: while tokio::time::Instant::now() < deadline {
                for id in &mine {
                    if let Ok(Some(d)) = self.store.get_deployment(*id).await
                        && d.state == chima_store::DeploymentState::Queued
                    {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue 'wait;
                    }
                }
                break;
            }
            engine.shutdown().await;
        }
        if let Some((stop, loop_)) = self.outbox.lock().await.take() {
            let _ = stop.send(true);
            loop_.abort();
        }
    }
}
