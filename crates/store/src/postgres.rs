//! The PostgreSQL store: production, shared by every faseng process.
//!
//! Claims use `FOR UPDATE SKIP LOCKED` so that claimers on many machines never wait on
//! each other; the partial unique index on running deployments settles any race that
//! slips through. Wake-ups use LISTEN/NOTIFY on [`WORK_CHANNEL`], sent by a trigger, so a
//! deployment queued by any process wakes idle claimers in every process.
//!
//! Times come from the database's clock, so that processes on machines with skewed
//! clocks agree on leases. The times a deployment records (`started_at`, `finished_at`,
//! its lease) use `clock_timestamp()`, not `now()`: `now()` is when the transaction
//! began, which can be before the snapshot that saw the previous deployment finish, and
//! would let a claim record a start earlier than the finish it waited for.

use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions, PgRow};
use sqlx::{FromRow, Row};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::common::{
    self, CLAIM_ATTEMPTS, Wake, deployment_columns, lock_columns, outbox_columns, redact_url,
};
use crate::error::{StoreError, is_unique_violation};
use crate::model::{
    AutoDeploy, AutoDeployPause, CancelResult, ChatMessage, Created, Deployment, DeploymentFilter,
    DeploymentState, LeaseStatus, Lock, LockResult, LogLine, NewDeployment, NewLogLine,
    OutboxEntry, Outcome, Runner, RunningOn,
};
use crate::{Backend, OUTBOX_IN_FLIGHT, Result, Store};

/// Migrations embedded at build time.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/postgres");

/// The NOTIFY channel the trigger signals when work may have become claimable.
pub const WORK_CHANNEL: &str = "faseng_work";

/// Connections per process by default: a few workers, the HTTP handlers, one listener.
const DEFAULT_MAX_CONNECTIONS: u32 = 10;

/// Lines per COPY message when appending logs: bounds one message's size.
const PG_LOG_CHUNK: usize = 5000;

/// First key of the advisory lock that serialises creating deployments in one
/// app+environment (the second is a hash of both). Two-key advisory locks are their own
/// key space, apart from sqlx's one-key migration lock; the value spells "chim".
const CREATE_LOCK_CLASS: i32 = 0x6368_696d;

/// One row of `COPY deployment_logs ... FROM STDIN` in text format. The line is
/// escaped so that nothing in it (a tab, a backslash, `\N`, `\.`, a newline) can
/// end the field or the row, or be read as NULL or as the end of the data.
fn copy_row(buf: &mut String, id: i64, seq: i64, l: &NewLogLine) {
    use std::fmt::Write as _;
    let _ = write!(buf, "{id}\t{seq}\t{}\t", l.stream.as_str());
    for c in common::clean_line(&l.line).chars() {
        match c {
            '\\' => buf.push_str("\\\\"),
            '\t' => buf.push_str("\\t"),
            '\n' => buf.push_str("\\n"),
            '\r' => buf.push_str("\\r"),
            c => buf.push(c),
        }
    }
    let _ = writeln!(
        buf,
        "\t{}",
        l.at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
    );
}

/// How long the server lets a faseng session sit idle inside a transaction. faseng's
/// transactions run their statements back to back (milliseconds); only a frozen or
/// cut-off process leaves one open, and its locks must not outlive a lease.
const IDLE_IN_TRANSACTION_TIMEOUT: &str = "5s";

/// Connections reserved for claims, renewals and reaps (see [`PgStore`]).
const LEASE_CONNECTIONS: u32 = 2;

/// The PostgreSQL implementation of [`Store`].
pub struct PgStore {
    pool: PgPool,
    /// A few connections of their own for claims, lease renewals and reaps, so that
    /// many open log pages, live streams or a burst of webhooks holding the main
    /// pool never delay a renewal past its guard's deadline.
    lease_pool: PgPool,
    /// The database URL without password, for messages.
    location: String,
    wake: Arc<Wake>,
    /// The LISTEN task, started by the first `wait_for_work` and restarted if it ends.
    listener: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

impl Drop for PgStore {
    fn drop(&mut self) {
        if let Ok(mut guard) = self.listener.lock()
            && let Some(handle) = guard.take()
        {
            handle.abort();
        }
    }
}

impl PgStore {
    /// Connects to `url` (the database must exist; it may be empty) and migrates it.
    pub async fn open(url: &str) -> Result<Self> {
        let location = redact_url(url);
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::InvalidUrl {
                url: location.clone(),
                detail: e.to_string(),
            })?
            .application_name("faseng")
            // A faseng frozen (or cut off) in the middle of a transaction would hold its
            // row locks, and a reaper waiting on them could never end its deployment:
            // the server ends such a session after this, and the locks go with it.
            .options([(
                "idle_in_transaction_session_timeout",
                IDLE_IN_TRANSACTION_TIMEOUT,
            )]);
        let pool = PgPoolOptions::new()
            .max_connections(DEFAULT_MAX_CONNECTIONS)
            .acquire_timeout(Duration::from_secs(5)) // under GitHub's 10 s webhook timeout: 503, not a hang
            .connect_with(options)
            .await
            .map_err(|source| StoreError::Connect {
                location: location.clone(),
                source,
            })?;
        let mut store = PgStore::from_pool(pool);
        store.location = location;
        store.migrate().await?;
        Ok(store)
    }

    /// Wraps an existing pool (tests, or a caller that tunes the pool). Does not migrate:
    /// call [`Store::migrate`].
    pub fn from_pool(pool: PgPool) -> Self {
        let options = pool.connect_options();
        let location = format!(
            "postgres://{}@{}:{}/{}",
            options.get_username(),
            options.get_host(),
            options.get_port(),
            options.get_database().unwrap_or("")
        );
        // Lazy: it connects on first use, and reconnects by itself after an outage.
        let lease_pool = PgPoolOptions::new()
            .max_connections(LEASE_CONNECTIONS)
            .acquire_timeout(Duration::from_secs(5))
            .connect_lazy_with((*options).clone());
        PgStore {
            pool,
            lease_pool,
            location,
            wake: Arc::new(Wake::default()),
            listener: Mutex::new(None),
        }
    }

    /// The pool, for callers that need their own queries (tests, admin tools).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Where this store points, without password.
    pub fn location(&self) -> &str {
        &self.location
    }

    async fn fetch_deployment(&self, op: &str, id: i64) -> Result<Option<Deployment>> {
        sqlx::query_as::<_, Deployment>(concat!(
            "SELECT ",
            deployment_columns!(),
            " FROM deployments WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| StoreError::db(format!("{op} (reading deployment {id})"), e))
    }

    /// Makes sure the LISTEN task runs. Returns a receiver that fires once the task
    /// listens when it had to start it, `None` when it was already running.
    fn ensure_listener(&self) -> Option<oneshot::Receiver<()>> {
        let Ok(mut guard) = self.listener.lock() else {
            // A panic while holding this lock cannot leave bad state behind; carry on
            // without a listener (callers then poll on their timeout).
            return None;
        };
        if guard.as_ref().is_some_and(|handle| !handle.is_finished()) {
            return None;
        }
        let (ready_tx, ready_rx) = oneshot::channel();
        let pool = self.pool.clone();
        let wake = Arc::clone(&self.wake);
        *guard = Some(tokio::spawn(listen_loop(pool, wake, ready_tx)));
        Some(ready_rx)
    }
}

/// Keeps a LISTEN connection and turns notifications into wake-ups. Reconnects with a
/// backoff; a lost connection may have dropped notifications, so it wakes everyone after
/// (re)connecting. Ends when the pool closes.
async fn listen_loop(pool: PgPool, wake: Arc<Wake>, ready: oneshot::Sender<()>) {
    let mut ready = Some(ready);
    let mut backoff = Duration::from_millis(100);
    loop {
        if pool.is_closed() {
            return;
        }
        let mut listener = match PgListener::connect_with(&pool).await {
            Ok(listener) => listener,
            Err(sqlx::Error::PoolClosed) => return,
            Err(e) => {
                tracing::warn!(error = %e, "cannot open the LISTEN connection; retrying in {backoff:?}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        if let Err(e) = listener.listen(WORK_CHANNEL).await {
            if matches!(e, sqlx::Error::PoolClosed) {
                return;
            }
            tracing::warn!(error = %e, "LISTEN {WORK_CHANNEL} failed; retrying in {backoff:?}");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
            continue;
        }
        backoff = Duration::from_millis(100);
        tracing::debug!("listening on {WORK_CHANNEL}");
        if let Some(ready) = ready.take() {
            let _ = ready.send(());
        }
        wake.signal();
        loop {
            match listener.try_recv().await {
                Ok(Some(_)) => wake.signal(),
                Ok(None) => {
                    tracing::debug!("LISTEN connection lost and re-established");
                    wake.signal();
                }
                Err(sqlx::Error::PoolClosed) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "LISTEN connection failed; reconnecting");
                    wake.signal();
                    break;
                }
            }
        }
    }
}

fn lease_secs(op: &str, lease: Duration) -> Result<f64> {
    // Validated in whole milliseconds so both backends accept the same leases.
    let millis = common::lease_millis(op, lease)?;
    Ok(millis as f64 / 1000.0)
}

fn decode_err(column: &str, detail: impl std::fmt::Display) -> sqlx::Error {
    sqlx::Error::ColumnDecode {
        index: column.to_owned(),
        source: detail.to_string().into(),
    }
}

impl<'r> FromRow<'r, PgRow> for Deployment {
    fn from_row(row: &'r PgRow) -> std::result::Result<Self, sqlx::Error> {
        let state: &str = row.try_get("state")?;
        Ok(Deployment {
            id: row.try_get("id")?,
            source_key: row.try_get("source_key")?,
            github_deployment_id: row.try_get("github_deployment_id")?,
            state: DeploymentState::from_str(state).map_err(|e| decode_err("state", e))?,
            requester: row.try_get("requester")?,
            app: row.try_get("app")?,
            environment: row.try_get("environment")?,
            repository: row.try_get("repository")?,
            git_ref: row.try_get("git_ref")?,
            sha: row.try_get("sha")?,
            task: row.try_get("task")?,
            hosts: row.try_get("hosts")?,
            provider: row.try_get("provider")?,
            payload: row.try_get("payload")?,
            notify: row.try_get("notify")?,
            timeout_secs: row.try_get("timeout_secs")?,
            created_at: row.try_get("created_at")?,
            started_at: row.try_get("started_at")?,
            finished_at: row.try_get("finished_at")?,
            exit_code: row.try_get("exit_code")?,
            reason: row.try_get("reason")?,
            worker_id: row.try_get("worker_id")?,
            lease_expires_at: row.try_get("lease_expires_at")?,
            cancel_requested_by: row.try_get("cancel_requested_by")?,
        })
    }
}

impl<'r> FromRow<'r, PgRow> for OutboxEntry {
    fn from_row(row: &'r PgRow) -> std::result::Result<Self, sqlx::Error> {
        let event: &str = row.try_get("event")?;
        Ok(OutboxEntry {
            id: row.try_get("id")?,
            deployment_id: row.try_get("deployment_id")?,
            target: row.try_get("target")?,
            event: DeploymentState::from_str(event).map_err(|e| decode_err("event", e))?,
            payload: row.try_get("payload")?,
            created_at: row.try_get("created_at")?,
            due_at: row.try_get("due_at")?,
            attempts: row.try_get("attempts")?,
            last_error: row.try_get("last_error")?,
            delivered_at: row.try_get("delivered_at")?,
        })
    }
}

impl<'r> FromRow<'r, PgRow> for Lock {
    fn from_row(row: &'r PgRow) -> std::result::Result<Self, sqlx::Error> {
        Ok(Lock {
            app: row.try_get("app")?,
            environment: row.try_get("environment")?,
            holder: row.try_get("holder")?,
            holder_id: row.try_get("holder_id")?,
            reason: row.try_get("reason")?,
            created_at: row.try_get("created_at")?,
            expires_at: row.try_get("expires_at")?,
        })
    }
}

impl<'r> FromRow<'r, PgRow> for LogLine {
    fn from_row(row: &'r PgRow) -> std::result::Result<Self, sqlx::Error> {
        let stream: &str = row.try_get("stream")?;
        Ok(LogLine {
            deployment_id: row.try_get("deployment_id")?,
            seq: row.try_get("seq")?,
            stream: stream
                .parse()
                .map_err(|e: String| decode_err("stream", e))?,
            line: row.try_get("line")?,
            at: row.try_get("at")?,
        })
    }
}

impl<'r> FromRow<'r, PgRow> for ChatMessage {
    fn from_row(row: &'r PgRow) -> std::result::Result<Self, sqlx::Error> {
        Ok(ChatMessage {
            deployment_id: row.try_get("deployment_id")?,
            channel: row.try_get("channel")?,
            ts: row.try_get("ts")?,
            updated_at: row.try_get("updated_at")?,
        })
    }
}

#[async_trait]
impl Store for PgStore {
    fn backend(&self) -> Backend {
        Backend::Postgres
    }

    async fn migrate(&self) -> Result<()> {
        let op = "read the applied migrations";
        let has_table: bool =
            sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
                .fetch_one(&self.pool)
                .await
                .map_err(|e| StoreError::db(op, e))?;
        let applied_max: Option<i64> = if has_table {
            sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations")
                .fetch_one(&self.pool)
                .await
                .map_err(|e| StoreError::db(op, e))?
        } else {
            None
        };
        common::check_not_newer(&self.location, &MIGRATOR, applied_max)?;
        MIGRATOR
            .run(&self.pool)
            .await
            .map_err(|source| StoreError::Migrate {
                location: self.location.clone(),
                source,
            })?;
        tracing::debug!(location = %self.location, "PostgreSQL schema is up to date");
        Ok(())
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(|e| StoreError::db("ping the database", e))?;
        Ok(())
    }

    async fn close(&self) {
        if let Ok(mut guard) = self.listener.lock()
            && let Some(handle) = guard.take()
        {
            handle.abort();
        }
        self.pool.close().await;
        self.lease_pool.close().await;
    }

    async fn create_deployment(&self, new: NewDeployment) -> Result<Created> {
        common::validate_new(&new)?;
        let op = || format!("create deployment {:?}", new.source_key);
        // Ids come from a sequence, and a sequence hands out numbers in the order inserts
        // ask, not the order they commit: #2 could commit after #3, and a claimer that saw
        // only #3 would start it first. The advisory lock (held until this statement
        // commits, and taken before the id is drawn) makes creation in one app+environment
        // one at a time, so there ids are in commit order and "oldest first" holds.
        // Other environments do not wait.
        let inserted = sqlx::query_as::<_, Deployment>(concat!(
            "WITH serial AS (SELECT pg_advisory_xact_lock($15, hashtext($4 || E'\\n' || $5))) \
             INSERT INTO deployments (source_key, github_deployment_id, requester, app, \
             environment, repository, git_ref, sha, task, hosts, provider, payload, notify, \
             timeout_secs, created_at) \
             SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, clock_timestamp() \
             FROM serial \
             ON CONFLICT DO NOTHING RETURNING ",
            deployment_columns!()
        ))
        .bind(&new.source_key)
        .bind(new.github_deployment_id)
        .bind(&new.requester)
        .bind(&new.app)
        .bind(&new.environment)
        .bind(&new.repository)
        .bind(&new.git_ref)
        .bind(&new.sha)
        .bind(&new.task)
        .bind(&new.hosts)
        .bind(&new.provider)
        .bind(&new.payload)
        .bind(&new.notify)
        .bind(new.timeout_secs)
        .bind(CREATE_LOCK_CLASS)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| StoreError::db(op(), e))?;
        if let Some(deployment) = inserted {
            tracing::debug!(id = deployment.id, source_key = %new.source_key, "deployment queued");
            return Ok(Created {
                deployment,
                already_existed: false,
            });
        }
        // A conflict on the source key or on the GitHub deployment id: ON CONFLICT waited
        // for the other insert to commit, so the existing row is visible now.
        let existing = sqlx::query_as::<_, Deployment>(concat!(
            "SELECT ",
            deployment_columns!(),
            " FROM deployments WHERE source_key = $1 \
              OR ($2::bigint IS NOT NULL AND github_deployment_id = $2) \
             ORDER BY id LIMIT 1"
        ))
        .bind(&new.source_key)
        .bind(new.github_deployment_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| StoreError::db(op(), e))?;
        match existing {
            Some(deployment) => Ok(Created {
                deployment,
                already_existed: true,
            }),
            None => Err(StoreError::Conflict {
                op: op(),
                detail: "the insert conflicted but the conflicting deployment is gone".to_owned(),
            }),
        }
    }

    async fn get_deployment(&self, id: i64) -> Result<Option<Deployment>> {
        self.fetch_deployment("get deployment", id).await
    }

    async fn find_by_github_id(&self, github_deployment_id: i64) -> Result<Option<Deployment>> {
        sqlx::query_as::<_, Deployment>(concat!(
            "SELECT ",
            deployment_columns!(),
            " FROM deployments WHERE github_deployment_id = $1"
        ))
        .bind(github_deployment_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| {
            StoreError::db(
                format!("find the deployment of GitHub deployment {github_deployment_id}"),
                e,
            )
        })
    }

    async fn list_deployments(&self, filter: &DeploymentFilter) -> Result<Vec<Deployment>> {
        sqlx::query_as::<_, Deployment>(concat!(
            "SELECT ",
            deployment_columns!(),
            " FROM deployments \
             WHERE ($1::text IS NULL OR app = $1) \
               AND ($2::text IS NULL OR environment = $2) \
               AND ($3::text IS NULL OR state = $3) \
               AND ($4::bigint IS NULL OR id < $4) \
             ORDER BY id DESC LIMIT $5"
        ))
        .bind(&filter.app)
        .bind(&filter.environment)
        .bind(filter.state.map(DeploymentState::as_str))
        .bind(filter.before_id)
        .bind(filter.effective_limit())
        .fetch_all(&self.pool)
        .await
        .map_err(|e| StoreError::db("list deployments", e))
    }

    async fn last_succeeded(
        &self,
        app: &str,
        environment: &str,
        before_id: Option<i64>,
    ) -> Result<Option<Deployment>> {
        sqlx::query_as::<_, Deployment>(concat!(
            "SELECT ",
            deployment_columns!(),
            " FROM deployments \
             WHERE app = $1 AND environment = $2 AND state = 'succeeded' AND task = 'deploy' \
               AND ($3::bigint IS NULL OR id < $3) \
             ORDER BY id DESC LIMIT 1"
        ))
        .bind(app)
        .bind(environment)
        .bind(before_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| {
            StoreError::db(
                format!("find the last succeeded deployment of {app} to {environment}"),
                e,
            )
        })
    }

    async fn count_active(&self) -> Result<(i64, i64)> {
        sqlx::query_as(common::COUNT_ACTIVE)
            .fetch_one(&self.pool)
            .await
            .map_err(|e| StoreError::db("count queued and running deployments", e))
    }

    async fn count_by_state(&self) -> Result<Vec<(DeploymentState, i64)>> {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT state, count(*) FROM deployments GROUP BY state")
                .fetch_all(&self.pool)
                .await
                .map_err(|e| StoreError::db("count deployments by state", e))?;
        common::states_in_order("count deployments by state", rows)
    }

    async fn claim(&self, worker_id: &str, lease: Duration) -> Result<Option<Deployment>> {
        let secs = lease_secs("claim a deployment", lease)?;
        self.reap_lapsed_leases().await?;
        for _ in 0..CLAIM_ATTEMPTS {
            let claimed = sqlx::query_as::<_, Deployment>(concat!(
                "UPDATE deployments \
                 SET state = 'running', started_at = clock_timestamp(), worker_id = $1, \
                     lease_expires_at = clock_timestamp() + make_interval(secs => $2) \
                 WHERE state = 'queued' AND id = ( \
                     SELECT d.id FROM deployments d \
                     WHERE d.state = 'queued' \
                       AND NOT EXISTS (SELECT 1 FROM deployments r \
                           WHERE r.app = d.app AND r.environment = d.environment \
                             AND r.state = 'running') \
                       AND NOT EXISTS (SELECT 1 FROM deployments o \
                           WHERE o.app = d.app AND o.environment = d.environment \
                             AND o.state = 'queued' AND o.id < d.id) \
                     ORDER BY d.id \
                     LIMIT 1 \
                     FOR UPDATE SKIP LOCKED) \
                 RETURNING ",
                deployment_columns!()
            ))
            .bind(worker_id)
            .bind(secs)
            .fetch_optional(&self.lease_pool)
            .await;
            match claimed {
                Ok(Some(deployment)) => {
                    tracing::debug!(id = deployment.id, worker_id, "deployment claimed");
                    return Ok(Some(deployment));
                }
                Ok(None) => return Ok(None),
                // Another claimer started a deployment of the same environment between our
                // snapshot and our update: the index refused ours. Look again.
                Err(e) if is_unique_violation(&e) => {
                    tracing::debug!(worker_id, "claim lost a race; retrying");
                }
                Err(e) => {
                    return Err(StoreError::db(
                        format!("claim a deployment for worker {worker_id}"),
                        e,
                    ));
                }
            }
        }
        Ok(None)
    }

    async fn renew_lease(&self, id: i64, worker_id: &str, lease: Duration) -> Result<LeaseStatus> {
        let op = || format!("renew the lease of deployment {id} for worker {worker_id}");
        let secs = lease_secs(&op(), lease)?;
        self.reap_lapsed_leases().await?;
        let renewed: Option<Option<String>> = sqlx::query_scalar(
            "UPDATE deployments SET lease_expires_at = clock_timestamp() + make_interval(secs => $3) \
             WHERE id = $1 AND state = 'running' AND worker_id = $2 \
               AND lease_expires_at >= now() \
             RETURNING cancel_requested_by",
        )
        .bind(id)
        .bind(worker_id)
        .bind(secs)
        .fetch_optional(&self.lease_pool)
        .await
        .map_err(|e| StoreError::db(op(), e))?;
        if let Some(cancel_requested_by) = renewed {
            return Ok(LeaseStatus {
                held: true,
                cancel_requested_by,
            });
        }
        match self.fetch_deployment(&op(), id).await? {
            None => Err(StoreError::not_found(format!("deployment {id}"))),
            Some(d) => Ok(LeaseStatus {
                held: false,
                cancel_requested_by: d.cancel_requested_by,
            }),
        }
    }

    async fn record_sha(&self, id: i64, worker_id: &str, sha: &str) -> Result<()> {
        let op = || format!("record the sha of deployment {id}");
        if sha.len() < 7 || sha.len() > 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(StoreError::InvalidInput {
                op: op(),
                detail: format!("sha {sha:?} is not a commit id"),
            });
        }
        let updated = sqlx::query(
            "UPDATE deployments SET sha = $3 \
             WHERE id = $1 AND state = 'running' AND worker_id = $2 AND (sha IS NULL OR sha = $3)",
        )
        .bind(id)
        .bind(worker_id)
        .bind(sha)
        .execute(&self.pool)
        .await
        .map_err(|e| StoreError::db(op(), e))?;
        if updated.rows_affected() == 1 {
            Ok(())
        } else {
            Err(StoreError::Conflict {
                op: op(),
                detail: format!(
                    "deployment {id} is not running under worker {worker_id}, or has another sha"
                ),
            })
        }
    }

    async fn finish(&self, id: i64, worker_id: &str, outcome: Outcome) -> Result<Deployment> {
        let op = || format!("finish deployment {id} as {}", outcome.state);
        let reason = common::outcome_reason(id, &outcome)?;
        let finished = sqlx::query_as::<_, Deployment>(concat!(
            "UPDATE deployments \
             SET state = $3, finished_at = clock_timestamp(), exit_code = $4, lease_expires_at = NULL, \
                 reason = COALESCE($5, 'cancelled by ' || cancel_requested_by, 'cancelled') \
             WHERE id = $1 AND state = 'running' AND worker_id = $2 \
             RETURNING ",
            deployment_columns!()
        ))
        .bind(id)
        .bind(worker_id)
        .bind(outcome.state.as_str())
        .bind(outcome.exit_code)
        .bind(reason)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| StoreError::db(op(), e))?;
        if let Some(deployment) = finished {
            tracing::debug!(id, state = %deployment.state, "deployment finished");
            return Ok(deployment);
        }
        let current = self.fetch_deployment(&op(), id).await?;
        Err(common::finish_refused(id, worker_id, &outcome, current))
    }

    async fn fail_queued(
        &self,
        id: i64,
        state: DeploymentState,
        reason: &str,
    ) -> Result<Deployment> {
        common::check_fail_queued_state(id, state)?;
        let op = || format!("end queued deployment {id} as {state}");
        let ended = sqlx::query_as::<_, Deployment>(concat!(
            "UPDATE deployments SET state = $2, finished_at = clock_timestamp(), reason = $3 \
             WHERE id = $1 AND state = 'queued' RETURNING ",
            deployment_columns!()
        ))
        .bind(id)
        .bind(state.as_str())
        .bind(reason)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| StoreError::db(op(), e))?;
        match ended {
            Some(deployment) => Ok(deployment),
            None => Err(common::fail_queued_refused(
                id,
                state,
                self.fetch_deployment(&op(), id).await?,
            )),
        }
    }

    async fn request_cancel(&self, id: i64, by: &str) -> Result<CancelResult> {
        let op = || format!("cancel deployment {id} for {by}");
        // A deployment only moves forward (queued -> running -> terminal), so at most one
        // of these rounds misses because of a concurrent change.
        for _ in 0..3 {
            let cancelled = sqlx::query_as::<_, Deployment>(concat!(
                "UPDATE deployments \
                 SET state = 'cancelled', finished_at = clock_timestamp(), cancel_requested_by = $2, \
                     reason = 'cancelled by ' || $2 \
                 WHERE id = $1 AND state = 'queued' RETURNING ",
                deployment_columns!()
            ))
            .bind(id)
            .bind(by)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| StoreError::db(op(), e))?;
            if let Some(deployment) = cancelled {
                return Ok(CancelResult::Cancelled(deployment));
            }
            let requested = sqlx::query_as::<_, Deployment>(concat!(
                "UPDATE deployments SET cancel_requested_by = COALESCE(cancel_requested_by, $2) \
                 WHERE id = $1 AND state = 'running' RETURNING ",
                deployment_columns!()
            ))
            .bind(id)
            .bind(by)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| StoreError::db(op(), e))?;
            if let Some(deployment) = requested {
                return Ok(CancelResult::Requested(deployment));
            }
            match self.fetch_deployment(&op(), id).await? {
                None => return Err(StoreError::not_found(format!("deployment {id}"))),
                Some(d) if d.state.is_terminal() => return Ok(CancelResult::AlreadyFinished(d)),
                Some(_) => continue,
            }
        }
        Err(StoreError::Conflict {
            op: op(),
            detail: "the deployment kept changing state; try again".to_owned(),
        })
    }

    async fn reap_lapsed_leases(&self) -> Result<Vec<Deployment>> {
        let reaped = sqlx::query_as::<_, Deployment>(concat!(
            "UPDATE deployments \
             SET state = 'errored', finished_at = clock_timestamp(), lease_expires_at = NULL, \
                 reason = 'worker lost: ' || worker_id || ' lost its lease (it stopped renewing it)' \
             WHERE state = 'running' AND lease_expires_at < now() \
             RETURNING ",
            deployment_columns!()
        ))
        .fetch_all(&self.lease_pool)
        .await
        .map_err(|e| StoreError::db("end deployments whose worker was lost", e))?;
        for d in &reaped {
            tracing::warn!(
                id = d.id,
                app = %d.app,
                environment = %d.environment,
                worker_id = d.worker_id.as_deref().unwrap_or(""),
                "deployment errored: its worker stopped renewing the lease"
            );
        }
        Ok(reaped)
    }

    async fn record_runner(&self, id: i64, worker_id: &str, runner: &Runner) -> Result<()> {
        let op = || format!("record where deployment {id} runs");
        let json = serde_json::to_string(runner).map_err(|e| StoreError::InvalidInput {
            op: op(),
            detail: e.to_string(),
        })?;
        sqlx::query(
            "UPDATE deployments SET runner = $3 WHERE id = $1 AND state = 'running' AND worker_id = $2",
        )
        .bind(id)
        .bind(worker_id)
        .bind(json)
        .execute(&self.lease_pool)
        .await
        .map_err(|e| StoreError::db(op(), e))?;
        Ok(())
    }

    async fn running_runners(&self) -> Result<Vec<RunningOn>> {
        let rows: Vec<(i64, Option<String>, String)> = sqlx::query_as(
            "SELECT id, worker_id, runner FROM deployments \
             WHERE state = 'running' AND runner IS NOT NULL ORDER BY id",
        )
        .fetch_all(&self.lease_pool)
        .await
        .map_err(|e| StoreError::db("list where running deployments run", e))?;
        Ok(common::running_on(rows))
    }

    async fn wait_for_work(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let notified = self.wake.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if let Some(ready) = self.ensure_listener() {
            // First wait (or the listener had died): once LISTEN is in place, return so
            // that the caller looks again; work queued before that sent no wake-up we saw.
            match tokio::time::timeout_at(deadline, ready).await {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(_)) => {
                    return Err(StoreError::db("listen for work", sqlx::Error::PoolClosed));
                }
                Err(_) => return Ok(()),
            }
        }
        let _ = tokio::time::timeout_at(deadline, notified).await;
        Ok(())
    }

    async fn append_logs(&self, id: i64, lines: &[NewLogLine]) -> Result<i64> {
        if lines.is_empty() {
            return self.log_count(id).await;
        }
        let op = || format!("append {} log lines to deployment {id}", lines.len());
        let count = i64::try_from(lines.len()).unwrap_or(i64::MAX);
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(|e| StoreError::db(op(), e))?;
        // Taking the numbers locks the deployment's row until commit: concurrent appenders
        // of one deployment get disjoint ranges.
        let last: Option<i64> = sqlx::query_scalar(
            "UPDATE deployments SET log_seq = log_seq + $2 WHERE id = $1 RETURNING log_seq",
        )
        .bind(id)
        .bind(count)
        .fetch_optional(&mut *tx)
        .await
        .map_err(|e| StoreError::db(op(), e))?;
        let Some(last) = last else {
            return Err(StoreError::not_found(format!("deployment {id}")));
        };
        // COPY, not INSERT: the rows go as one stream of text that the server parses
        // without planning a statement per batch. bench/run measured 40k lines/s with
        // INSERT ... UNNEST batches and several times that with COPY (BENCHMARKS.md).
        let mut before = last - count;
        let mut copy = tx
            .copy_in_raw("COPY deployment_logs (deployment_id, seq, stream, line, at) FROM STDIN")
            .await
            .map_err(|e| StoreError::db(op(), e))?;
        let mut buf = String::new();
        for chunk in lines.chunks(PG_LOG_CHUNK) {
            buf.clear();
            for l in chunk {
                before += 1;
                copy_row(&mut buf, id, before, l);
            }
            if let Err(e) = copy.send(buf.as_bytes()).await {
                let _ = copy.abort("faseng: sending the log lines failed").await;
                return Err(StoreError::db(op(), e));
            }
        }
        copy.finish().await.map_err(|e| StoreError::db(op(), e))?;
        tx.commit().await.map_err(|e| StoreError::db(op(), e))?;
        Ok(last)
    }

    async fn read_logs(&self, id: i64, after_seq: i64, limit: i64) -> Result<Vec<LogLine>> {
        let op = || format!("read the log of deployment {id}");
        let lines = sqlx::query_as::<_, LogLine>(
            "SELECT deployment_id, seq, stream, line, at FROM deployment_logs \
             WHERE deployment_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
        )
        .bind(id)
        .bind(after_seq)
        .bind(common::log_limit(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(|e| StoreError::db(op(), e))?;
        if lines.is_empty() && self.fetch_deployment(&op(), id).await?.is_none() {
            return Err(StoreError::not_found(format!("deployment {id}")));
        }
        Ok(lines)
    }

    async fn log_count(&self, id: i64) -> Result<i64> {
        let count: Option<i64> =
            sqlx::query_scalar("SELECT log_seq FROM deployments WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await
                .map_err(|e| {
                    StoreError::db(format!("count the log lines of deployment {id}"), e)
                })?;
        count.ok_or_else(|| StoreError::not_found(format!("deployment {id}")))
    }

    async fn lock_by(
        &self,
        app: &str,
        environment: &str,
        holder: &str,
        holder_id: Option<&str>,
        reason: Option<&str>,
        expires_at: Option<DateTime<Utc>>,
    ) -> Result<LockResult> {
        let op = || format!("lock {app} in {environment} for {holder}");
        common::validate_lock(&op(), app, environment, holder)?;
        for _ in 0..3 {
            let acquired = sqlx::query_as::<_, Lock>(concat!(
                "INSERT INTO locks (app, environment, holder, holder_id, reason, created_at, expires_at) \
                 VALUES ($1, $2, $3, $6, $4, now(), $5) \
                 ON CONFLICT (app, environment) DO UPDATE \
                 SET holder = excluded.holder, holder_id = excluded.holder_id, reason = excluded.reason, \
                     expires_at = excluded.expires_at, \
                     created_at = CASE WHEN COALESCE(locks.holder_id, locks.holder) = COALESCE(excluded.holder_id, excluded.holder) \
                                        AND (locks.expires_at IS NULL OR locks.expires_at > now()) \
                                       THEN locks.created_at ELSE excluded.created_at END \
                 WHERE COALESCE(locks.holder_id, locks.holder) = COALESCE(excluded.holder_id, excluded.holder) \
                    OR (locks.expires_at IS NOT NULL AND locks.expires_at <= now()) \
                 RETURNING ",
                lock_columns!()
            ))
            .bind(app)
            .bind(environment)
            .bind(holder)
            .bind(reason)
            .bind(expires_at)
            .bind(holder_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| StoreError::db(op(), e))?;
            if let Some(lock) = acquired {
                return Ok(LockResult::Acquired(lock));
            }
            if let Some(existing) = self.get_lock(app, environment).await? {
                return Ok(LockResult::HeldBy(existing));
            }
            // The other lock expired or was removed in between: try again.
        }
        Err(StoreError::Conflict {
            op: op(),
            detail: "the lock kept changing hands; try again".to_owned(),
        })
    }

    async fn unlock(&self, app: &str, environment: &str) -> Result<Option<Lock>> {
        let row = sqlx::query(concat!(
            "DELETE FROM locks WHERE app = $1 AND environment = $2 RETURNING ",
            lock_columns!(),
            ", (expires_at IS NULL OR expires_at > now()) AS in_force"
        ))
        .bind(app)
        .bind(environment)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| StoreError::db(format!("unlock {app} in {environment}"), e))?;
        let Some(row) = row else {
            return Ok(None);
        };
        let op = || format!("unlock {app} in {environment}");
        let in_force: bool = row
            .try_get("in_force")
            .map_err(|e| StoreError::db(op(), e))?;
        let lock = Lock::from_row(&row).map_err(|e| StoreError::db(op(), e))?;
        Ok(in_force.then_some(lock))
    }

    async fn get_lock(&self, app: &str, environment: &str) -> Result<Option<Lock>> {
        sqlx::query_as::<_, Lock>(concat!(
            "SELECT ",
            lock_columns!(),
            " FROM locks WHERE app = $1 AND environment = $2 \
               AND (expires_at IS NULL OR expires_at > now())"
        ))
        .bind(app)
        .bind(environment)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| StoreError::db(format!("read the lock of {app} in {environment}"), e))
    }

    async fn list_locks(&self) -> Result<Vec<Lock>> {
        sqlx::query_as::<_, Lock>(concat!(
            "SELECT ",
            lock_columns!(),
            " FROM locks WHERE expires_at IS NULL OR expires_at > now() \
             ORDER BY app, environment"
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(|e| StoreError::db("list locks", e))
    }

    async fn record_delivery(&self, delivery_id: &str, event: &str) -> Result<bool> {
        let result = sqlx::query(
            "INSERT INTO webhook_deliveries (delivery_id, event, received_at) \
             VALUES ($1, $2, now()) ON CONFLICT (delivery_id) DO NOTHING",
        )
        .bind(delivery_id)
        .bind(event)
        .execute(&self.pool)
        .await
        .map_err(|e| StoreError::db(format!("record webhook delivery {delivery_id:?}"), e))?;
        Ok(result.rows_affected() == 1)
    }

    async fn take_due_outbox(&self, target: &str, limit: i64) -> Result<Vec<OutboxEntry>> {
        let in_flight = OUTBOX_IN_FLIGHT.as_secs_f64();
        let mut entries = sqlx::query_as::<_, OutboxEntry>(concat!(
            "UPDATE outbox SET due_at = now() + make_interval(secs => $3) \
             WHERE id IN ( \
                 SELECT o.id FROM outbox o \
                 WHERE o.target = $1 AND o.delivered_at IS NULL AND o.due_at <= now() \
                   AND NOT EXISTS (SELECT 1 FROM outbox p \
                       WHERE p.target = o.target AND p.deployment_id = o.deployment_id \
                         AND p.delivered_at IS NULL AND p.id < o.id) \
                 ORDER BY o.id \
                 LIMIT $2 \
                 FOR UPDATE SKIP LOCKED) \
             RETURNING ",
            outbox_columns!()
        ))
        .bind(target)
        .bind(limit.clamp(1, 1000))
        .bind(in_flight)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| StoreError::db(format!("take due outbox entries for {target}"), e))?;
        entries.sort_by_key(|e| e.id);
        Ok(entries)
    }

    async fn mark_delivered(&self, outbox_id: i64) -> Result<()> {
        let result = sqlx::query(
            "UPDATE outbox SET delivered_at = COALESCE(delivered_at, now()) WHERE id = $1",
        )
        .bind(outbox_id)
        .execute(&self.pool)
        .await
        .map_err(|e| StoreError::db(format!("mark outbox entry {outbox_id} delivered"), e))?;
        if result.rows_affected() == 0 {
            return Err(StoreError::not_found(format!("outbox entry {outbox_id}")));
        }
        Ok(())
    }

    async fn reschedule_outbox(
        &self,
        outbox_id: i64,
        error: &str,
        retry_at: DateTime<Utc>,
    ) -> Result<()> {
        let op = || format!("reschedule outbox entry {outbox_id}");
        let result = sqlx::query(
            "UPDATE outbox SET attempts = attempts + 1, last_error = $2, due_at = $3 \
             WHERE id = $1 AND delivered_at IS NULL",
        )
        .bind(outbox_id)
        .bind(error)
        .bind(retry_at)
        .execute(&self.pool)
        .await
        .map_err(|e| StoreError::db(op(), e))?;
        if result.rows_affected() == 0 {
            let exists: bool =
                sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM outbox WHERE id = $1)")
                    .bind(outbox_id)
                    .fetch_one(&self.pool)
                    .await
                    .map_err(|e| StoreError::db(op(), e))?;
            if !exists {
                return Err(StoreError::not_found(format!("outbox entry {outbox_id}")));
            }
        }
        Ok(())
    }

    async fn outbox_backlog(&self) -> Result<i64> {
        sqlx::query_scalar("SELECT count(*) FROM outbox WHERE delivered_at IS NULL")
            .fetch_one(&self.pool)
            .await
            .map_err(|e| StoreError::db("count undelivered outbox entries", e))
    }

    async fn outbox_for_deployment(&self, id: i64) -> Result<Vec<OutboxEntry>> {
        sqlx::query_as::<_, OutboxEntry>(concat!(
            "SELECT ",
            outbox_columns!(),
            " FROM outbox WHERE deployment_id = $1 ORDER BY id"
        ))
        .bind(id)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| StoreError::db(format!("read the outbox of deployment {id}"), e))
    }

    async fn claim_auto_deploy(
        &self,
        app: &str,
        environment: &str,
        sha: &str,
        contexts: &str,
        stale_after: Duration,
    ) -> Result<bool> {
        // A concurrent taker waits for the winner's row lock, then checks the WHERE
        // against the winner's row, whose `created_at` is now: exactly one wins.
        let done = sqlx::query(
            "INSERT INTO auto_deploys (app, environment, sha, contexts, created_at) \
             VALUES ($1, $2, $3, $4, clock_timestamp()) \
             ON CONFLICT (app, environment, sha) DO UPDATE \
             SET contexts = EXCLUDED.contexts, created_at = EXCLUDED.created_at \
             WHERE auto_deploys.github_deployment_id IS NULL \
               AND auto_deploys.created_at < clock_timestamp() - make_interval(secs => $5)",
        )
        .bind(app)
        .bind(environment)
        .bind(sha)
        .bind(contexts)
        .bind(stale_after.as_secs_f64())
        .execute(&self.pool)
        .await
        .map_err(|e| {
            StoreError::db(
                format!("claim the auto-deploy of {sha} to {app} {environment}"),
                e,
            )
        })?;
        Ok(done.rows_affected() == 1)
    }

    async fn release_auto_deploy(&self, app: &str, environment: &str, sha: &str) -> Result<()> {
        sqlx::query("DELETE FROM auto_deploys WHERE app = $1 AND environment = $2 AND sha = $3 AND github_deployment_id IS NULL")
            .bind(app)
            .bind(environment)
            .bind(sha)
            .execute(&self.pool)
            .await
            .map_err(|e| StoreError::db(format!("release the auto-deploy of {sha} to {app} {environment}"), e))?;
        Ok(())
    }

    async fn set_auto_deploy_github_id(
        &self,
        app: &str,
        environment: &str,
        sha: &str,
        id: i64,
    ) -> Result<()> {
        sqlx::query("UPDATE auto_deploys SET github_deployment_id = $4 WHERE app = $1 AND environment = $2 AND sha = $3")
            .bind(app)
            .bind(environment)
            .bind(sha)
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(|e| StoreError::db(format!("record the GitHub deployment of the auto-deploy of {sha}"), e))?;
        Ok(())
    }

    async fn last_auto_deploy(&self, app: &str, environment: &str) -> Result<Option<AutoDeploy>> {
        let row = sqlx::query(
            "SELECT app, environment, sha, contexts, github_deployment_id, created_at FROM auto_deploys \
             WHERE app = $1 AND environment = $2 ORDER BY created_at DESC LIMIT 1",
        )
        .bind(app)
        .bind(environment)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| StoreError::db(format!("read the last auto-deploy of {app} {environment}"), e))?;
        let Some(row) = row else { return Ok(None) };
        let get = |e: sqlx::Error| {
            StoreError::db(
                format!("read the last auto-deploy of {app} {environment}"),
                e,
            )
        };
        Ok(Some(AutoDeploy {
            app: row.try_get("app").map_err(get)?,
            environment: row.try_get("environment").map_err(get)?,
            sha: row.try_get("sha").map_err(get)?,
            contexts: row.try_get("contexts").map_err(get)?,
            github_deployment_id: row.try_get("github_deployment_id").map_err(get)?,
            created_at: row.try_get("created_at").map_err(get)?,
        }))
    }

    async fn pause_auto_deploy(
        &self,
        app: &str,
        environment: &str,
        by: &str,
        reason: Option<&str>,
    ) -> Result<AutoDeployPause> {
        sqlx::query(concat!(
            "INSERT INTO auto_deploy_pauses (app, environment, paused_by, reason, created_at) VALUES ($1, $2, $3, $4, ",
            "clock_timestamp()",
            ") ON CONFLICT (app, environment) DO UPDATE SET paused_by = excluded.paused_by, reason = excluded.reason, created_at = excluded.created_at"
        ))
        .bind(app)
        .bind(environment)
        .bind(by)
        .bind(reason)
        .execute(&self.pool)
        .await
        .map_err(|e| StoreError::db(format!("pause auto-deploy of {app} {environment}"), e))?;
        self.auto_deploy_pause(app, environment)
            .await?
            .ok_or_else(|| {
                StoreError::not_found(format!("the auto-deploy pause of {app} {environment}"))
            })
    }

    async fn resume_auto_deploy(
        &self,
        app: &str,
        environment: &str,
    ) -> Result<Option<AutoDeployPause>> {
        let before = self.auto_deploy_pause(app, environment).await?;
        sqlx::query("DELETE FROM auto_deploy_pauses WHERE app = $1 AND environment = $2")
            .bind(app)
            .bind(environment)
            .execute(&self.pool)
            .await
            .map_err(|e| StoreError::db(format!("resume auto-deploy of {app} {environment}"), e))?;
        Ok(before)
    }

    async fn auto_deploy_pause(
        &self,
        app: &str,
        environment: &str,
    ) -> Result<Option<AutoDeployPause>> {
        let row = sqlx::query(
            "SELECT app, environment, paused_by, reason, created_at FROM auto_deploy_pauses WHERE app = $1 AND environment = $2",
        )
        .bind(app)
        .bind(environment)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| StoreError::db(format!("read the auto-deploy pause of {app} {environment}"), e))?;
        let Some(row) = row else { return Ok(None) };
        let get = |e: sqlx::Error| {
            StoreError::db(
                format!("read the auto-deploy pause of {app} {environment}"),
                e,
            )
        };
        Ok(Some(AutoDeployPause {
            app: row.try_get("app").map_err(get)?,
            environment: row.try_get("environment").map_err(get)?,
            paused_by: row.try_get("paused_by").map_err(get)?,
            reason: row.try_get("reason").map_err(get)?,
            created_at: row.try_get("created_at").map_err(get)?,
        }))
    }

    async fn chat_message(&self, deployment_id: i64) -> Result<Option<ChatMessage>> {
        sqlx::query_as::<_, ChatMessage>(
            "SELECT deployment_id, channel, ts, updated_at FROM chat_messages \
             WHERE deployment_id = $1",
        )
        .bind(deployment_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| {
            StoreError::db(
                format!("read the chat message of deployment {deployment_id}"),
                e,
            )
        })
    }

    async fn set_chat_message(&self, deployment_id: i64, channel: &str, ts: &str) -> Result<()> {
        let op = || format!("record the chat message of deployment {deployment_id}");
        common::validate_chat_message(&op(), channel, ts)?;
        let result = sqlx::query(
            "INSERT INTO chat_messages (deployment_id, channel, ts, updated_at) \
             SELECT id, $2, $3, clock_timestamp() FROM deployments WHERE id = $1 \
             ON CONFLICT (deployment_id) DO UPDATE \
             SET channel = excluded.channel, ts = excluded.ts, updated_at = excluded.updated_at",
        )
        .bind(deployment_id)
        .bind(channel)
        .bind(ts)
        .execute(&self.pool)
        .await
        .map_err(|e| StoreError::db(op(), e))?;
        if result.rows_affected() == 0 {
            return Err(StoreError::not_found(format!("deployment {deployment_id}")));
        }
        Ok(())
    }

    async fn set_chat_route(
        &self,
        source_key: &str,
        response_url: &str,
        expires_at: DateTime<Utc>,
        uses_left: i32,
    ) -> Result<()> {
        let op = || format!("record the chat route of {source_key}");
        common::validate_chat_route(&op(), source_key, response_url, uses_left)?;
        sqlx::query(
            "INSERT INTO chat_routes (source_key, response_url, expires_at, uses_left) \
             VALUES ($1, $2, $3, $4) \
             ON CONFLICT (source_key) DO UPDATE \
             SET response_url = excluded.response_url, expires_at = excluded.expires_at, \
                 uses_left = excluded.uses_left",
        )
        .bind(source_key)
        .bind(response_url)
        .bind(expires_at)
        .bind(uses_left)
        .execute(&self.pool)
        .await
        .map_err(|e| StoreError::db(op(), e))?;
        Ok(())
    }

    async fn use_chat_route(&self, source_key: &str) -> Result<Option<String>> {
        sqlx::query_scalar::<_, String>(
            "UPDATE chat_routes SET uses_left = uses_left - 1 \
             WHERE source_key = $1 AND uses_left > 0 AND expires_at > clock_timestamp() \
             RETURNING response_url",
        )
        .bind(source_key)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| StoreError::db(format!("use the chat route of {source_key}"), e))
    }

    async fn drop_chat_route(&self, source_key: &str) -> Result<()> {
        sqlx::query("DELETE FROM chat_routes WHERE source_key = $1")
            .bind(source_key)
            .execute(&self.pool)
            .await
            .map_err(|e| StoreError::db(format!("drop the chat route of {source_key}"), e))?;
        Ok(())
    }
}
