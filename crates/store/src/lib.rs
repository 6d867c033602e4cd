//! The job store of faseng (and of chima's embedded mode): deployments, their logs,
//! environment locks, webhook deliveries and pending notifications.
//!
//! One trait, [`Store`], two implementations: [`PgStore`] for production (many faseng
//! processes share one PostgreSQL) and [`SqliteStore`] for the embedded mode (one
//! process, one file). Both give the same answers; one behaviour suite
//! (`tests/store/`) runs against each.
//!
//! The rules the database enforces, not the code around it:
//!
//! * **One running deployment per app+environment**: a partial unique index on
//!   `deployments(app, environment) WHERE state = 'running' AND task <> 'deploy:noop'`.
//!   Claimers that race past the checks in their queries cannot both commit; the loser
//!   just claims nothing.
//! * **FIFO within an environment, parallel across environments**: a claim takes the
//!   oldest queued deployment that is the oldest of its environment and whose environment
//!   has nothing running.
//! * **Dry runs stand aside** ([`DRY_RUN_TASK`], issue 18): they change nothing, so they
//!   are claimable at once, beside a running deploy, and neither a running nor a queued
//!   dry run holds a real deploy back.
//! * **Notifications are never lost**: a trigger writes the outbox rows of every state
//!   change in the transaction of the change (whatever statement made it), so a process
//!   that dies between the change and the send leaves the event in the outbox.
//! * **Deploys are never re-run by the store**: a claimer holds a lease; when the lease
//!   lapses the deployment becomes `errored` ("worker lost"), with its notifications,
//!   because a deploy is not idempotent and a silent replay could do harm.
//!
//! Queries are plain runtime queries (`query` / `query_as` with `$N` placeholders), so
//! the crate builds without a database.

#![warn(missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

mod columns;
mod common;
mod dialect;
pub mod error;
mod group;
pub mod model;
pub mod postgres;
mod shared;
mod shared_tables;
pub mod sqlite;

pub use error::StoreError;
pub use model::{
    Approval, ApprovalNeed, AutoDeploy, AutoDeployPause, CancelResult, ChatMessage, Created,
    Decided, Decision, Deployment, DeploymentFilter, DeploymentState, EVERY, Freeze, LeaseStatus,
    Lock, LockResult, LogLine, NewDeployment, NewLogLine, OutboxEntry, Outcome, Runner, RunningOn,
    Stream,
};
pub use postgres::PgStore;
pub use sqlite::SqliteStore;

/// Result type of the store.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Which database a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// PostgreSQL ([`PgStore`]): production, many faseng processes on one database.
    Postgres,
    /// SQLite ([`SqliteStore`]): chima's embedded mode, one process and one file.
    Sqlite,
}

impl Backend {
    /// Picks the backend from a URL's scheme: `postgres://` / `postgresql://`, or
    /// `sqlite://` / `sqlite:`.
    pub fn from_url(url: &str) -> Result<Backend> {
        let lower = url.trim_start().to_ascii_lowercase();
        if lower.starts_with("postgres://") || lower.starts_with("postgresql://") {
            Ok(Backend::Postgres)
        } else if lower.starts_with("sqlite:") {
            Ok(Backend::Sqlite)
        } else {
            Err(StoreError::InvalidUrl {
                url: common::redact_url(url),
                detail: "expected postgres://user@host/db, postgresql://..., \
                         sqlite://path/to/file.db or sqlite:path/to/file.db"
                    .to_owned(),
            })
        }
    }
}

/// Opens the store named by `url` and brings its schema up to date.
///
/// PostgreSQL: `postgres://` or `postgresql://`; the database must exist (it may be empty).
/// SQLite: `sqlite://path` or `sqlite:path`; the file (and its folder) is created if
/// missing, in WAL mode with a busy timeout so that concurrent claimers wait rather than
/// fail. Refuses a database that holds migrations newer than this build knows.
pub async fn open(url: &str) -> Result<Arc<dyn Store>> {
    match Backend::from_url(url)? {
        Backend::Postgres => Ok(Arc::new(PgStore::open(url).await?)),
        Backend::Sqlite => Ok(Arc::new(SqliteStore::open(url).await?)),
    }
}

/// The job store. Object safe: the engine and the HTTP layer hold an `Arc<dyn Store>`.
///
/// Every method is one short transaction; none holds a transaction open across calls,
/// so a caller that dies leaves nothing locked.
#[async_trait]
pub trait Store: Send + Sync {
    /// Which database this is.
    fn backend(&self) -> Backend;

    /// Applies pending migrations; fails with [`StoreError::NewerMigrations`] on a database
    /// migrated by a newer build. [`open`] already does this.
    async fn migrate(&self) -> Result<()>;

    /// One round trip to the database (health checks).
    async fn ping(&self) -> Result<()>;

    /// Closes the connections (graceful shutdown). The store is unusable afterwards.
    async fn close(&self);

    // ---- deployments ----------------------------------------------------------------

    /// Queues a deployment, idempotently: a second request with the same `source_key` (or
    /// the same `github_deployment_id`) creates nothing and returns the existing deployment
    /// with `already_existed = true`. Safe under concurrent callers. Writes the `queued`
    /// outbox events and wakes idle claimers. Within one app+environment, ids are handed
    /// out in the order creations commit, even across processes: a claimer that sees a
    /// deployment also sees every older one of its environment.
    async fn create_deployment(&self, new: NewDeployment) -> Result<Created>;

    /// [`Store::create_deployment`] for a deployment that must be approved first (app.json
    /// `approvals`): it starts `awaiting_approval`, which no claim takes, with `approval.note`
    /// as its reason, until [`Store::decide_approval`] has `approval.count` different
    /// approvers' approvals (it becomes `queued`), a rejection, or `approval.expires_in`
    /// passes (it becomes `rejected`, "approval expired"). Idempotent by source key as
    /// `create_deployment` is. Who may approve is the caller's check (app.json), not
    /// the store's.
    async fn create_awaiting_approval(
        &self,
        new: NewDeployment,
        approval: ApprovalNeed,
    ) -> Result<Created>;

    /// Records `approver`'s (identity key `approver_key`) decision on deployment `id`,
    /// atomically with what follows from it: one decision per approver and deployment (a
    /// second one changes nothing and answers [`Decided::AlreadyDecided`]); a rejection
    /// ends the deployment `rejected` ("rejected by <approver>: <reason>"); the approval
    /// that reaches the count makes it `queued` ("approved by <approvers>") and claimable.
    /// Each writes its outbox events: the state change's (trigger), or for an approval
    /// that is not yet enough, a `chat` event saying who approved. A deployment whose
    /// approval lapsed is rejected now instead. [`StoreError::NotFound`] for an unknown id.
    async fn decide_approval(
        &self,
        id: i64,
        approver_key: &str,
        approver: &str,
        decision: Decision,
        reason: Option<&str>,
    ) -> Result<Decided>;

    /// The approvers' decisions on deployment `id`, oldest first.
    async fn approvals(&self, id: i64) -> Result<Vec<Approval>>;

    /// Ends every deployment whose approval lapsed as `rejected` ("approval expired"),
    /// with its notifications, and returns them. Called by `claim`, so that it happens
    /// whoever is watching; public for a sweep.
    async fn expire_approvals(&self) -> Result<Vec<Deployment>>;

    /// The deployment with this id, if any.
    async fn get_deployment(&self, id: i64) -> Result<Option<Deployment>>;

    /// The deployment created for this GitHub deployment id, if any.
    async fn find_by_github_id(&self, github_deployment_id: i64) -> Result<Option<Deployment>>;

    /// Deployments matching the filter, newest first.
    async fn list_deployments(&self, filter: &DeploymentFilter) -> Result<Vec<Deployment>>;

    /// The newest succeeded run of the `deploy` task (exactly `deploy`: never
    /// `deploy:lock`, `deploy:unlock` or another `deploy:<word>` task, which change no
    /// code) to app+environment, optionally only among those older than `before_id`:
    /// what a rollback goes back to.
    async fn last_succeeded(
        &self,
        app: &str,
        environment: &str,
        before_id: Option<i64>,
    ) -> Result<Option<Deployment>>;

    /// How many deployments are in each state (states with none are left out).
    async fn count_by_state(&self) -> Result<Vec<(DeploymentState, i64)>>;

    /// `(queued, running)`: the deployments not yet ended. Read through the partial
    /// indexes on those states, so its cost follows the queue, never the history: this
    /// is what `/metrics` asks on every scrape.
    async fn count_active(&self) -> Result<(i64, i64)>;

    // ---- life cycle -------------------------------------------------------------------

    /// Claims the oldest queued deployment whose app+environment has nothing running and
    /// no older queued deployment (dry runs left out of both: a queued dry run is
    /// claimable at once, and counts for no one's turn): it becomes `running`, held by
    /// `worker_id` until
    /// now + `lease` unless renewed. Reaps lapsed leases first, so no sweeper is needed.
    /// Ignores locks: the engine checks them after claiming. `None` when nothing is
    /// claimable (including when another claimer won a race).
    async fn claim(&self, worker_id: &str, lease: Duration) -> Result<Option<Deployment>>;

    /// Extends the lease of a running deployment held by `worker_id` to now + `lease`.
    /// `held = false` when the worker lost it (the lease had lapsed: the deployment is
    /// `errored` now; or it is not running): the worker must stop. Also reports a cancel
    /// request.
    ///
    /// **The fencing invariant.** The new expiry is computed from the database's
    /// `clock_timestamp()` while the statement runs, which is no earlier than the moment
    /// the caller sent it. A caller that measures from just before sending, and stops
    /// its provider (the guard's deadline) a margin before `sent + lease`, has stopped
    /// it before any other process can see the lease as lapsed and reap it. A lapsed
    /// lease cannot be renewed (the `lease_expires_at >= now()` condition), and a reap
    /// re-checks the expiry in the same statement that ends the deployment, so a lease
    /// renewed after the reaper looked is never reaped.
    async fn renew_lease(&self, id: i64, worker_id: &str, lease: Duration) -> Result<LeaseStatus>;

    /// Records the commit a running deployment's checkout resolved its ref to
    /// (deployments made from chat name a ref, not a sha). Only by the lease
    /// holder, and never changes a sha that is already known.
    async fn record_sha(&self, id: i64, worker_id: &str, sha: &str) -> Result<()>;

    /// Ends a running deployment held by `worker_id` with a terminal outcome.
    /// [`StoreError::InvalidTransition`] when it is not running,
    /// [`StoreError::Conflict`] when another worker holds it; nothing changes then.
    async fn finish(&self, id: i64, worker_id: &str, outcome: Outcome) -> Result<Deployment>;

    /// Ends a *queued* deployment without running it (environment locked by someone else,
    /// unknown provider, ...): `state` must be terminal and not `succeeded`. A deployment
    /// already claimed is ended with [`Store::finish`] by its claimer instead.
    async fn fail_queued(
        &self,
        id: i64,
        state: DeploymentState,
        reason: &str,
    ) -> Result<Deployment>;

    /// Cancels: a queued deployment is `cancelled` at once; a running one is marked
    /// (`cancel_requested_by`) for its worker to stop; a finished one is left alone.
    async fn request_cancel(&self, id: i64, by: &str) -> Result<CancelResult>;

    /// Ends every running deployment whose lease has lapsed as `errored` ("worker lost"),
    /// with its notifications, and returns them. Called by `claim` and `renew_lease`;
    /// public for a periodic sweep or an admin action.
    async fn reap_lapsed_leases(&self) -> Result<Vec<Deployment>>;

    /// Records where a running deployment held by `worker_id` runs (with the claim, and
    /// with each guard). Nothing changes when the worker no longer holds it.
    async fn record_runner(&self, id: i64, worker_id: &str, runner: &Runner) -> Result<()>;

    /// Every running deployment with a recorded runner: what a restarting faseng looks
    /// through for the ones its dead predecessor on the same host left.
    async fn running_runners(&self) -> Result<Vec<RunningOn>>;

    /// Returns when work may have become claimable, or after `timeout`. Spurious returns
    /// are allowed (callers loop on `claim`). PostgreSQL: LISTEN/NOTIFY, across processes;
    /// the first call returns as soon as it listens. SQLite: an in-process signal plus a
    /// short poll for other processes.
    async fn wait_for_work(&self, timeout: Duration) -> Result<()>;

    // ---- logs -------------------------------------------------------------------------

    /// Appends lines with consecutive sequence numbers (1-based per deployment) in one
    /// transaction; returns the last sequence number (the current one for an empty batch).
    async fn append_logs(&self, id: i64, lines: &[NewLogLine]) -> Result<i64>;

    /// Up to `limit` lines with `seq > after_seq`, in order (live pages poll with the last
    /// seq they showed).
    async fn read_logs(&self, id: i64, after_seq: i64, limit: i64) -> Result<Vec<LogLine>>;

    /// How many lines the deployment has (= its last sequence number).
    async fn log_count(&self, id: i64) -> Result<i64>;

    // ---- locks ------------------------------------------------------------------------

    /// Locks app+environment for `holder` (a name people read), identified by
    /// `holder_id` (a verified identity key such as `chat:U024BE7LH` or `github:carol`;
    /// `None` compares by name). `HeldBy` when someone else holds an unexpired lock; the
    /// same holder (same id, else same name) locking again updates reason and expiry. An
    /// expired lock is overwritten.
    async fn lock_by(
        &self,
        app: &str,
        environment: &str,
        holder: &str,
        holder_id: Option<&str>,
        reason: Option<&str>,
        expires_at: Option<DateTime<Utc>>,
    ) -> Result<LockResult>;

    /// [`Store::lock_by`] for a holder known by name only.
    async fn lock(
        &self,
        app: &str,
        environment: &str,
        holder: &str,
        reason: Option<&str>,
        expires_at: Option<DateTime<Utc>>,
    ) -> Result<LockResult> {
        self.lock_by(app, environment, holder, None, reason, expires_at)
            .await
    }

    /// Removes the lock; returns it if it was in force.
    async fn unlock(&self, app: &str, environment: &str) -> Result<Option<Lock>>;

    /// The lock in force on app+environment (an expired one counts as absent).
    async fn get_lock(&self, app: &str, environment: &str) -> Result<Option<Lock>>;

    /// Every lock in force, by app then environment.
    async fn list_locks(&self) -> Result<Vec<Lock>>;

    // ---- webhook deliveries -----------------------------------------------------------

    /// Records a webhook delivery id; `true` the first time it is seen, `false` for a
    /// redelivery (acknowledge it, queue nothing).
    async fn record_delivery(&self, delivery_id: &str, event: &str) -> Result<bool>;

    // ---- outbox -----------------------------------------------------------------------

    /// Takes up to `limit` due events for `target`: per deployment only its oldest
    /// undelivered event for that target (so each deployment's messages go out in order).
    /// Taken events are hidden from other senders for [`OUTBOX_IN_FLIGHT`]; a sender that
    /// dies before marking them lets them come back then.
    async fn take_due_outbox(&self, target: &str, limit: i64) -> Result<Vec<OutboxEntry>>;

    /// The event was delivered: it is never handed out again.
    async fn mark_delivered(&self, outbox_id: i64) -> Result<()>;

    /// Delivery failed: count the attempt, keep the error, try again at `retry_at`.
    /// No effect on a delivered event.
    async fn reschedule_outbox(
        &self,
        outbox_id: i64,
        error: &str,
        retry_at: DateTime<Utc>,
    ) -> Result<()>;

    /// Undelivered events (metrics).
    async fn outbox_backlog(&self) -> Result<i64>;

    /// Every event of one deployment, delivered or not, oldest first (admin pages, tests).
    async fn outbox_for_deployment(&self, id: i64) -> Result<Vec<OutboxEntry>>;

    // ---- auto-deploy ------------------------------------------------------------------

    /// Claims `sha` for an auto-deploy to app+environment: `true` for the one
    /// caller that gets it (across processes), `false` when it was claimed.
    ///
    /// A claim whose GitHub deployment was never recorded (no
    /// [`Store::set_auto_deploy_github_id`]) and that is older than `stale_after` is
    /// taken over, as if it were not there: its claimer died between the claim and the
    /// record, and without this the sha could never ship. The takeover is one
    /// statement, so of several callers exactly one gets it (and restarts the clock); a
    /// claim with its GitHub deployment recorded is never taken over. `stale_after` must
    /// be longer than the longest GitHub create with its retries, or a slow claimer
    /// still at work could see its claim taken and the sha deployed twice.
    async fn claim_auto_deploy(
        &self,
        app: &str,
        environment: &str,
        sha: &str,
        contexts: &str,
        stale_after: Duration,
    ) -> Result<bool>;

    /// Gives a claim back when its GitHub deployment could not be created, so
    /// that the next green event for the sha tries again.
    async fn release_auto_deploy(&self, app: &str, environment: &str, sha: &str) -> Result<()>;

    /// Records the GitHub deployment made for a claim.
    async fn set_auto_deploy_github_id(
        &self,
        app: &str,
        environment: &str,
        sha: &str,
        id: i64,
    ) -> Result<()>;

    /// The latest auto-deploy of app+environment.
    async fn last_auto_deploy(&self, app: &str, environment: &str) -> Result<Option<AutoDeploy>>;

    /// Pauses auto-deploy for app+environment (replacing an earlier pause).
    async fn pause_auto_deploy(
        &self,
        app: &str,
        environment: &str,
        by: &str,
        reason: Option<&str>,
    ) -> Result<AutoDeployPause>;

    /// Resumes it; returns the pause that was lifted, if any.
    async fn resume_auto_deploy(
        &self,
        app: &str,
        environment: &str,
    ) -> Result<Option<AutoDeployPause>>;

    /// The pause of app+environment, if any.
    async fn auto_deploy_pause(
        &self,
        app: &str,
        environment: &str,
    ) -> Result<Option<AutoDeployPause>>;

    // ---- chat messages ----------------------------------------------------------------

    /// The chat message that reports this deployment, if one was posted.
    async fn chat_message(&self, deployment_id: i64) -> Result<Option<ChatMessage>>;

    /// Records the chat message that reports this deployment (after posting it), so that
    /// later state changes edit it instead of posting again. A second call replaces the
    /// first (the message was posted anew). [`StoreError::NotFound`] when there is no
    /// such deployment; [`StoreError::InvalidInput`] for an empty channel or ts.
    async fn set_chat_message(&self, deployment_id: i64, channel: &str, ts: &str) -> Result<()>;

    // ---- chat routes ------------------------------------------------------------------

    /// Records where the deployment with this `source_key` may post its messages: a
    /// slash command's `response_url`, usable `uses_left` more times until `expires_at`.
    /// Replaces any route the key had. [`StoreError::InvalidInput`] for an empty key or
    /// url, or a negative `uses_left`.
    async fn set_chat_route(
        &self,
        source_key: &str,
        response_url: &str,
        expires_at: DateTime<Utc>,
        uses_left: i32,
    ) -> Result<()>;

    /// Takes one use of the route of `source_key`, atomically: when it has not expired
    /// and has uses left, one use fewer remains and its url is returned; otherwise (no
    /// route, expired, used up) `None`.
    async fn use_chat_route(&self, source_key: &str) -> Result<Option<String>>;

    /// Forgets the route of `source_key` (no error when there is none).
    async fn drop_chat_route(&self, source_key: &str) -> Result<()>;

    // ---- freezes ----------------------------------------------------------------------

    /// Freezes app+environment (either may be [`EVERY`]) until `ends_at`, for `by` (a
    /// name people read) identified by `by_id` (a verified identity key). A freeze of
    /// the same scope is replaced. [`StoreError::InvalidInput`] for an empty app,
    /// environment or name.
    async fn freeze(
        &self,
        app: &str,
        environment: &str,
        by: &str,
        by_id: Option<&str>,
        reason: Option<&str>,
        ends_at: DateTime<Utc>,
    ) -> Result<Freeze>;

    /// Lifts the freezes of `app` (or [`EVERY`]'s) in `environment` (exactly that
    /// scope), or in any environment when `None`; returns those that were in force.
    async fn unfreeze(&self, app: &str, environment: Option<&str>) -> Result<Vec<Freeze>>;

    /// The freezes in force that cover deploys of `app` to `environment` (its own, its
    /// app's for every environment, every app's), the one that ends last first.
    async fn freezes_of(&self, app: &str, environment: &str) -> Result<Vec<Freeze>>;

    /// Every freeze in force, by app then environment.
    async fn list_freezes(&self) -> Result<Vec<Freeze>>;
}

/// The dry-run task (`chima_config::DRY_RUN_TASK`, spelled here too because the store
/// depends on no other crate of the workspace; a test in the engine keeps the two
/// equal). The store's SQL and the migration `20261213000000_dry_runs` use the literal.
pub const DRY_RUN_TASK: &str = "deploy:noop";

/// How long an outbox event taken by a sender stays hidden from other senders before it
/// is handed out again (the sender died, or forgot to mark it).
pub const OUTBOX_IN_FLIGHT: Duration = Duration::from_secs(120);

/// How often a waiting SQLite claimer looks for work written by another process.
pub const SQLITE_POLL_INTERVAL: Duration = Duration::from_millis(200);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scheme_picks_the_backend() {
        for url in [
            "postgres://faseng@db/faseng",
            "postgresql://faseng:pw@db:5432/faseng?sslmode=require",
            "POSTGRES://db/x",
        ] {
            assert_eq!(
                Backend::from_url(url).ok(),
                Some(Backend::Postgres),
                "{url}"
            );
        }
        for url in [
            "sqlite://data/faseng.db",
            "sqlite:faseng.db",
            "sqlite::memory:",
        ] {
            assert_eq!(Backend::from_url(url).ok(), Some(Backend::Sqlite), "{url}");
        }
    }

    #[tokio::test]
    async fn an_unknown_scheme_is_refused_without_showing_the_password() {
        let err = match open("mysql://root:hunter2@db/faseng").await {
            Ok(_) => panic!("mysql is not a backend"),
            Err(err) => err,
        };
        assert!(matches!(err, StoreError::InvalidUrl { .. }), "{err:?}");
        let text = err.to_string();
        assert!(text.contains("mysql://root@db/faseng"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("postgres://"), "{text}");
        assert!(
            open("faseng.db").await.is_err(),
            "a bare path names no backend"
        );
    }

    #[tokio::test]
    async fn sqlite_in_memory_works_on_one_connection() {
        let store = open("sqlite::memory:").await.expect("in-memory store");
        let created = store
            .create_deployment(NewDeployment {
                source_key: "k".to_owned(),
                requester: "alice".to_owned(),
                app: "web".to_owned(),
                environment: "production".to_owned(),
                repository: "acme/web".to_owned(),
                git_ref: "main".to_owned(),
                sha: None,
                task: "deploy".to_owned(),
                hosts: None,
                provider: "script".to_owned(),
                payload: serde_json::json!({}),
                github_deployment_id: None,
                notify: vec![],
                timeout_secs: None,
            })
            .await
            .expect("create");
        let claimed = store
            .claim("w", Duration::from_secs(5))
            .await
            .expect("claim")
            .expect("claimable");
        assert_eq!(claimed.id, created.deployment.id);
        assert_eq!(store.outbox_backlog().await.expect("backlog"), 0);
        store.close().await;
    }
}
