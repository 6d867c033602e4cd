//! Types shared by both backends and by the store's callers.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Where a deployment is in its life.
///
/// `Queued -> Running -> Succeeded | Failed | Errored | Cancelled`; a queued deployment may
/// also end `Cancelled` or `Errored` without running. A deployment to an environment
/// with `approvals` in app.json starts `AwaitingApproval`: enough approvals make it
/// `Queued`; a rejection or the approval's expiry makes it `Rejected`. Stored as lowercase text, which is
/// also how it is serialised, so that the database and the JSON surface read the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeploymentState {
    /// Waiting for approvals (app.json `approvals`); no worker takes it.
    #[serde(rename = "awaiting_approval")]
    AwaitingApproval,
    /// Waiting for a worker.
    Queued,
    /// Claimed by a worker that holds a lease on it.
    Running,
    /// The provider ran and exited successfully.
    Succeeded,
    /// The provider ran and failed (non-zero exit).
    Failed,
    /// The deployment could not run or its worker was lost (not the provider's fault).
    Errored,
    /// Stopped on someone's request.
    Cancelled,
    /// Rejected by an approver, or its approval expired: it never ran.
    Rejected,
}

impl DeploymentState {
    /// Every state, in life-cycle order.
    pub const ALL: [DeploymentState; 8] = [
        DeploymentState::AwaitingApproval,
        DeploymentState::Queued,
        DeploymentState::Running,
        DeploymentState::Succeeded,
        DeploymentState::Failed,
        DeploymentState::Errored,
        DeploymentState::Cancelled,
        DeploymentState::Rejected,
    ];

    /// The text stored in the database and used in outbox events.
    pub fn as_str(self) -> &'static str {
        match self {
            DeploymentState::AwaitingApproval => "awaiting_approval",
            DeploymentState::Queued => "queued",
            DeploymentState::Running => "running",
            DeploymentState::Succeeded => "succeeded",
            DeploymentState::Failed => "failed",
            DeploymentState::Errored => "errored",
            DeploymentState::Cancelled => "cancelled",
            DeploymentState::Rejected => "rejected",
        }
    }

    /// A terminal state never changes again.
    pub fn is_terminal(self) -> bool {
        !matches!(
            self,
            DeploymentState::AwaitingApproval | DeploymentState::Queued | DeploymentState::Running
        )
    }
}

impl fmt::Display for DeploymentState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Text that is not one of the states.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown deployment state {0:?}")]
pub struct UnknownState(pub String);

impl FromStr for DeploymentState {
    type Err = UnknownState;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DeploymentState::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| UnknownState(s.to_owned()))
    }
}

/// A request for a deployment, as the webhook handler, the API or chat builds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewDeployment {
    /// Idempotency key: the GitHub deployment id, the webhook delivery id, or a client key
    /// for direct API calls. The same key twice yields one deployment.
    pub source_key: String,
    /// Who asked (chat user or GitHub login).
    pub requester: String,
    /// The app's name in app.json.
    pub app: String,
    /// The environment to deploy to (`production`, `staging`, ...).
    pub environment: String,
    /// `owner/name`.
    pub repository: String,
    /// Branch, tag or sha as the requester wrote it.
    pub git_ref: String,
    /// The resolved commit, when known at creation.
    pub sha: Option<String>,
    /// `deploy`, `deploy:migrations`, ...
    pub task: String,
    /// Host filter (hubot-deploy's `/hosts`), if any.
    pub hosts: Option<String>,
    /// The provider that runs it (`shell`, `fabric`, `capistrano`, `heroku`, ...), as app.json
    /// names it.
    pub provider: String,
    /// The deployment payload (hubot-deploy compatible).
    pub payload: serde_json::Value,
    /// The GitHub deployment id, when GitHub knows this deployment. Unique when present: a
    /// redelivered webhook with another delivery id is still the same deployment.
    pub github_deployment_id: Option<i64>,
    /// Outbox targets, e.g. `["github", "chat"]`: each state change queues one event per target.
    pub notify: Vec<String>,
    /// Provider timeout, if the app sets one.
    pub timeout_secs: Option<i64>,
}

/// A deployment as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct Deployment {
    /// The store's id, the one the API, the web pages and the logs use.
    pub id: i64,
    /// The idempotency key it was created with ([`NewDeployment::source_key`]).
    pub source_key: String,
    /// The GitHub deployment id, when GitHub knows this deployment.
    pub github_deployment_id: Option<i64>,
    /// Where it is in its life.
    pub state: DeploymentState,
    /// Who asked (chat user or GitHub login).
    pub requester: String,
    /// The app's name in app.json.
    pub app: String,
    /// The environment it deploys to.
    pub environment: String,
    /// `owner/name`.
    pub repository: String,
    /// Branch, tag or sha as the requester wrote it.
    pub git_ref: String,
    /// The resolved commit, once known.
    pub sha: Option<String>,
    /// `deploy`, `deploy:migrations`, ...
    pub task: String,
    /// Host filter (hubot-deploy's `/hosts`), if any.
    pub hosts: Option<String>,
    /// The provider that runs it.
    pub provider: String,
    /// The deployment payload (hubot-deploy compatible).
    pub payload: serde_json::Value,
    /// Outbox targets: each state change queues one event per target.
    #[sqlx(try_from = "crate::columns::Targets")]
    pub notify: Vec<String>,
    /// Provider timeout, if the app sets one.
    pub timeout_secs: Option<i64>,
    /// When it was queued.
    pub created_at: DateTime<Utc>,
    /// When a worker claimed it.
    pub started_at: Option<DateTime<Utc>>,
    /// When it reached its terminal state.
    pub finished_at: Option<DateTime<Utc>>,
    /// The provider's exit code, when it ran and exited.
    pub exit_code: Option<i32>,
    /// Why it ended as it did; set for every terminal state.
    pub reason: Option<String>,
    /// The worker that claimed it (kept after it ends, for the record).
    pub worker_id: Option<String>,
    /// While running: when the claimer's lease lapses unless renewed.
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// Set when someone asked to cancel a running deployment; the worker stops it.
    pub cancel_requested_by: Option<String>,
    /// How many different approvers must approve it before it may run (app.json
    /// `approvals`); `None` when it needed no approval.
    pub approvals_needed: Option<i32>,
    /// When an approval still awaited lapses (the deployment is then `rejected`,
    /// "approval expired").
    pub approval_expires_at: Option<DateTime<Utc>>,
}

/// What `create_deployment` did.
#[derive(Debug, Clone, PartialEq)]
pub struct Created {
    /// The new deployment, or the existing one when [`already_existed`](Self::already_existed).
    pub deployment: Deployment,
    /// `true` when a deployment with the same source key (or GitHub deployment id) existed:
    /// nothing was created and `deployment` is the existing one.
    pub already_existed: bool,
}

/// How a running deployment ended, as its worker reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// A terminal state.
    pub state: DeploymentState,
    /// The provider's exit code, when it ran and exited.
    pub exit_code: Option<i32>,
    /// Why; when `None` the store writes a short default (every terminal state has a reason).
    pub reason: Option<String>,
}

impl Outcome {
    /// The provider exited 0.
    pub fn succeeded(exit_code: i32) -> Self {
        Outcome {
            state: DeploymentState::Succeeded,
            exit_code: Some(exit_code),
            reason: None,
        }
    }

    /// The provider exited non-zero.
    pub fn failed(exit_code: Option<i32>, reason: impl Into<String>) -> Self {
        Outcome {
            state: DeploymentState::Failed,
            exit_code,
            reason: Some(reason.into()),
        }
    }

    /// The deployment could not run to completion through no fault of the provider.
    pub fn errored(reason: impl Into<String>) -> Self {
        Outcome {
            state: DeploymentState::Errored,
            exit_code: None,
            reason: Some(reason.into()),
        }
    }

    /// Stopped on request.
    pub fn cancelled(exit_code: Option<i32>, reason: impl Into<String>) -> Self {
        Outcome {
            state: DeploymentState::Cancelled,
            exit_code,
            reason: Some(reason.into()),
        }
    }
}

/// The answer to a lease renewal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseStatus {
    /// `false` when the worker no longer holds the deployment (the lease lapsed and the
    /// deployment was ended `errored`, or it is not running): the worker must stop.
    pub held: bool,
    /// Someone asked to cancel: the worker should stop the provider and finish `Cancelled`.
    pub cancel_requested_by: Option<String>,
}

/// Where a running deployment runs: recorded with the claim, and again with each
/// guard the worker starts, so that a restarted faseng on the same host can find
/// what a dead predecessor left running and make sure it is gone.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Runner {
    /// `/etc/machine-id` (or the host name when there is none).
    pub host: String,
    /// `/proc/sys/kernel/random/boot_id`: pids and start times mean something only
    /// within one boot.
    pub boot: String,
    /// The faseng process and its start time (clock ticks since boot).
    pub pid: u32,
    /// The start time of `pid`: with it a reused pid is not mistaken for the faseng that died.
    pub pid_start: u64,
    /// The guard running the provider now, when one is.
    pub guard_pid: Option<u32>,
    /// The start time of `guard_pid`, for the same reason as `pid_start`.
    pub guard_start: Option<u64>,
}

/// A running deployment with its recorded [`Runner`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunningOn {
    /// The deployment's id.
    pub id: i64,
    /// The worker that claimed it.
    pub worker_id: String,
    /// Where that worker (and its guard) runs.
    pub runner: Runner,
}

/// What `request_cancel` did.
#[derive(Debug, Clone, PartialEq)]
pub enum CancelResult {
    /// It was queued and is now `cancelled` (its notifications are queued).
    Cancelled(Deployment),
    /// It is running: the cancel request is recorded and its worker will stop it.
    Requested(Deployment),
    /// It had already finished; nothing changed.
    AlreadyFinished(Deployment),
}

/// Output stream of a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    /// The provider's standard output.
    Stdout,
    /// The provider's standard error (and faseng's own notes on the run).
    Stderr,
}

impl Stream {
    /// The text stored in the database and shown in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

impl fmt::Display for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Stream {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "stdout" => Ok(Stream::Stdout),
            "stderr" => Ok(Stream::Stderr),
            other => Err(format!("unknown log stream {other:?}")),
        }
    }
}

/// A log line to append.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewLogLine {
    /// Which stream the line came from.
    pub stream: Stream,
    /// The line, without its newline.
    pub line: String,
    /// When the line was read.
    pub at: DateTime<Utc>,
}

/// A stored log line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct LogLine {
    /// The deployment the line belongs to.
    pub deployment_id: i64,
    /// 1-based, consecutive per deployment.
    pub seq: i64,
    /// Which stream the line came from.
    pub stream: Stream,
    /// The line, without its newline.
    pub line: String,
    /// When the line was read.
    pub at: DateTime<Utc>,
}

/// An environment lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct Lock {
    /// The app locked.
    pub app: String,
    /// The environment locked: locks are per app and environment.
    pub environment: String,
    /// Who holds it, as people read it.
    pub holder: String,
    /// The holder's verified identity key (`chat:<id>`, `github:<login>`); `None` for
    /// locks taken by name only (before identities were verified).
    #[serde(default)]
    pub holder_id: Option<String>,
    /// Why, as the holder gave it.
    pub reason: Option<String>,
    /// When it was taken (or last updated by its holder).
    pub created_at: DateTime<Utc>,
    /// After this instant the lock counts as absent.
    pub expires_at: Option<DateTime<Utc>>,
}

impl Lock {
    /// Whether the identity with key `id` (and name `name`) holds this lock: by id when
    /// the lock has one, else by name. A lock never yields to a matching *name* when it
    /// was taken by a verified identity.
    pub fn held_by(&self, id: &str, name: &str) -> bool {
        match &self.holder_id {
            Some(holder_id) => holder_id == id,
            None => self.holder.eq_ignore_ascii_case(name),
        }
    }
}

/// The scope word of a freeze that covers every app or every environment.
pub const EVERY: &str = "*";

/// A deploy freeze: no deploys to what it covers until `ends_at` (break-glass aside).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct Freeze {
    /// The app frozen, or [`EVERY`].
    pub app: String,
    /// The environment frozen, or [`EVERY`].
    pub environment: String,
    /// Who froze it, as people read it.
    pub frozen_by: String,
    /// The verified identity key of who froze it (`chat:<id>`, `github:<login>`).
    #[serde(default)]
    pub frozen_by_id: Option<String>,
    /// Why, as they gave it.
    pub reason: Option<String>,
    /// When it was placed (or last replaced).
    pub starts_at: DateTime<Utc>,
    /// When it ends by itself; past it, it counts as absent everywhere.
    pub ends_at: DateTime<Utc>,
}

impl Freeze {
    /// Whether it covers deploys of `app` to `environment`.
    pub fn covers(&self, app: &str, environment: &str) -> bool {
        (self.app == EVERY || self.app == app)
            && (self.environment == EVERY || self.environment == environment)
    }
}

/// What `lock` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockResult {
    /// The caller holds the lock now (new, taken over from an expired one, or updated
    /// because the caller already held it).
    Acquired(Lock),
    /// Someone else holds it; nothing changed.
    HeldBy(Lock),
}

/// One notification event to deliver.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct OutboxEntry {
    /// The event's id; deliveries are recorded against it.
    pub id: i64,
    /// The deployment whose state change this reports.
    pub deployment_id: i64,
    /// Who it is for: `github`, `chat`, ...
    pub target: String,
    /// The state the deployment entered.
    pub event: DeploymentState,
    /// `{"state": ..., "reason": ..., "exit_code": ...}` as of the change.
    pub payload: serde_json::Value,
    /// When the state change queued it.
    pub created_at: DateTime<Utc>,
    /// Not handed out before this instant.
    pub due_at: DateTime<Utc>,
    /// Failed delivery attempts so far.
    pub attempts: i32,
    /// Why the last failed attempt failed, for the operator.
    pub last_error: Option<String>,
    /// When it was delivered (or given up); `None` while pending.
    pub delivered_at: Option<DateTime<Utc>>,
}

/// The chat message that reports a deployment: posted once, then edited in place on
/// every state change (ARCHITECTURE.md, "The crates": the outbox).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct ChatMessage {
    /// The deployment the message reports.
    pub deployment_id: i64,
    /// The channel id the chat service answered with (not the name it was posted to):
    /// edits address the message by channel id and timestamp.
    pub channel: String,
    /// The message's id in its channel (Slack's `ts`, e.g. `1700000000.000100`).
    pub ts: String,
    /// When it was last recorded.
    pub updated_at: DateTime<Utc>,
}

/// An auto-deploy faseng decided on: this sha, to this environment, because
/// these contexts were green.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct AutoDeploy {
    /// The app deployed.
    pub app: String,
    /// The environment deployed to.
    pub environment: String,
    /// The commit deployed: one auto-deploy per app, environment and sha.
    pub sha: String,
    /// The contexts that let it through, comma-separated.
    pub contexts: String,
    /// The GitHub deployment created for it, once created.
    pub github_deployment_id: Option<i64>,
    /// When faseng decided on it.
    pub created_at: DateTime<Utc>,
}

/// Auto-deploy paused for an environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct AutoDeployPause {
    /// The app paused.
    pub app: String,
    /// The environment paused.
    pub environment: String,
    /// Who paused it.
    pub paused_by: String,
    /// Why, as they gave it.
    pub reason: Option<String>,
    /// When it was paused.
    pub created_at: DateTime<Utc>,
}

/// Filter for `list_deployments`; empty fields match everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeploymentFilter {
    /// Only this app.
    pub app: Option<String>,
    /// Only this environment.
    pub environment: Option<String>,
    /// Only deployments in this state.
    pub state: Option<DeploymentState>,
    /// Only deployments with a smaller id (for paging back through history).
    pub before_id: Option<i64>,
    /// At most this many (the store caps it at 1000; 0 or less means 50).
    pub limit: i64,
}

impl DeploymentFilter {
    /// The limit actually applied.
    pub(crate) fn effective_limit(&self) -> i64 {
        match self.limit {
            l if l <= 0 => 50,
            l => l.min(1000),
        }
    }
}

/// What a deployment that must be approved waits for (app.json `approvals`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalNeed {
    /// How many different approvers must approve (at least 1).
    pub count: i32,
    /// How long the approvals may take; then the deployment is `rejected`.
    pub expires_in: std::time::Duration,
    /// Who may approve, in words (`1 approval from alice, github:carol`): kept as the
    /// waiting deployment's `reason`, so that its GitHub status and chat message say it.
    pub note: String,
}

/// An approver's decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    /// Let it run.
    Approve,
    /// Do not let it run.
    Reject,
}

impl Decision {
    /// As stored: `approve` or `reject`.
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Approve => "approve",
            Decision::Reject => "reject",
        }
    }
}

impl FromStr for Decision {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "approve" => Ok(Decision::Approve),
            "reject" => Ok(Decision::Reject),
            other => Err(format!("unknown approval decision {other:?}")),
        }
    }
}

/// One approver's recorded decision on a deployment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct Approval {
    /// The deployment decided on.
    pub deployment_id: i64,
    /// The approver's verified identity key (`chat:U024BE7LH`, `github:carol`): one
    /// decision per key and deployment.
    pub approver_key: String,
    /// The approver as people read it.
    pub approver: String,
    /// Approve or reject.
    pub decision: Decision,
    /// The reason given with a rejection.
    pub reason: Option<String>,
    /// When it was decided.
    pub at: DateTime<Utc>,
}

/// What [`crate::Store::decide_approval`] did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Decided {
    /// The decision is recorded; the deployment still waits for more approvals.
    Recorded {
        /// The deployment, still `awaiting_approval`.
        deployment: Deployment,
        /// Every decision so far, oldest first.
        approvals: Vec<Approval>,
    },
    /// That was the last approval needed: the deployment is `queued` now.
    Approved {
        /// The deployment, `queued`.
        deployment: Deployment,
        /// Every decision, oldest first.
        approvals: Vec<Approval>,
    },
    /// Rejected: the deployment is `rejected` and never runs.
    Rejected {
        /// The deployment, `rejected`.
        deployment: Deployment,
    },
    /// This approver had already decided; nothing changed (a second click).
    AlreadyDecided {
        /// The deployment as it is.
        deployment: Deployment,
        /// The approver's earlier decision.
        earlier: Approval,
    },
    /// It does not wait for approval (never needed one, already approved, ended, or
    /// its approval expired just now); nothing was recorded.
    NotAwaiting {
        /// The deployment as it is.
        deployment: Deployment,
    },
}
