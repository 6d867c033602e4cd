//! The delivery contract between the notification outbox and the services it notifies.
//!
//! The outbox loop (crate `chima-outbox`) takes due events from the store, reads the
//! deployment each one concerns and hands both, as the plain types of this crate, to a
//! [`Deliver`]er: GitHub's status deliverer (`chima-github`) and Slack's chat deliverer
//! (`chima-slack`). The deliverer says what became of the event ([`Outcome`]); the loop
//! records it (delivered, retried with backoff, given up). So the API clients know
//! nothing of the store, and the store nothing of GitHub or Slack.
//!
//! Types only: no database, no network.

#![warn(missing_docs)]

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Where a deployment is in its life (the store's states, as the services see them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeploymentState {
    /// Waiting for approvals (app.json `approvals`).
    #[serde(rename = "awaiting_approval")]
    AwaitingApproval,
    /// Waiting for a worker.
    Queued,
    /// Claimed by a worker and running.
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

    /// `queued`, `running`, ...: as stored and shown.
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

/// A deployment as a notification shows it: what the status and the message are made of.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Deployment {
    /// The store's id, the one faseng's log page and API use.
    pub id: i64,
    /// Its idempotency key, which also names its chat route (a command's `response_url`).
    pub source_key: String,
    /// The GitHub deployment id; `None` when GitHub does not know this deployment (so
    /// it gets no status).
    pub github_deployment_id: Option<i64>,
    /// Its state now (an event may be older).
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
    /// The deployment payload (hubot-deploy compatible, with faseng's notes).
    pub payload: Value,
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
}

/// One outbox event: a deployment entered `state`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// The outbox entry's id.
    pub id: i64,
    /// The deployment whose state change this reports.
    pub deployment_id: i64,
    /// `github`, `chat`, ...
    pub target: String,
    /// The state the deployment entered.
    pub state: DeploymentState,
    /// `{"state": ..., "reason": ..., "exit_code": ...}` as of the change.
    pub payload: Value,
    /// Failed delivery attempts so far.
    pub attempts: i32,
}

/// What became of one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Delivered: the event is done.
    Delivered,
    /// Nothing to deliver (not a GitHub deployment, no room, superseded...): done.
    Skipped(String),
    /// Not delivered: try again after the loop's backoff, and not before `after` when
    /// the service said how long to wait (a rate limit's reset or `Retry-After`).
    Retry {
        /// What failed, kept on the event for the admin pages.
        error: String,
        /// The service's own wait, when it gave one.
        after: Option<Duration>,
    },
    /// Retrying cannot help: the event is done, undelivered. With `record`, the error is
    /// kept on the event (counted as an attempt) for the admin pages.
    GaveUp {
        /// What failed.
        error: String,
        /// Whether to keep `error` on the event for the admin pages.
        record: bool,
    },
}

/// A service that delivers outbox events of one target.
#[async_trait]
pub trait Deliver: Send + Sync {
    /// The outbox target it serves (`github`, `chat`).
    fn target(&self) -> &str;

    /// Delivers `event` of `deployment` (read after the event was taken: its state may
    /// be later than the event's). Never panics on a service's answer; every failure is
    /// an [`Outcome`].
    async fn deliver(&self, event: &Event, deployment: &Deployment) -> Outcome;
}

/// A failure of the records behind [`ChatRecords`] (the store): transient, retried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordError(pub String);

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RecordError {}

/// The chat message that reports a deployment: posted once, then edited in place.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// The channel id the chat service answered with.
    pub channel: String,
    /// The message's id in its channel (Slack's `ts`).
    pub ts: String,
}

/// What a chat deliverer keeps between deliveries (the store's chat messages, chat
/// routes and logs), without knowing the store.
#[async_trait]
pub trait ChatRecords: Send + Sync {
    /// The message that reports this deployment, if one was posted.
    async fn chat_message(&self, deployment_id: i64) -> Result<Option<ChatMessage>, RecordError>;

    /// Records the message posted for this deployment (replacing an earlier one).
    async fn set_chat_message(
        &self,
        deployment_id: i64,
        channel: &str,
        ts: &str,
    ) -> Result<(), RecordError>;

    /// Takes one use of the route (a command's `response_url`) of `source_key`, when it
    /// has one that has not expired and has uses left.
    async fn use_chat_route(&self, source_key: &str) -> Result<Option<String>, RecordError>;

    /// Forgets the route of `source_key`.
    async fn drop_chat_route(&self, source_key: &str) -> Result<(), RecordError>;

    /// The last `limit` lines of the deployment's log, oldest first.
    async fn last_log_lines(
        &self,
        deployment_id: i64,
        limit: usize,
    ) -> Result<Vec<String>, RecordError>;
}
