//! The SQLite store: chima's embedded mode (one process, one file, no setup).
//!
//! SQLite has one writer at a time, so the rules that PostgreSQL needs `SKIP LOCKED` for
//! hold here by construction, provided no writer fails instead of waiting:
//!
//! * WAL mode, so readers never block the writer and the writer never blocks readers;
//! * a busy timeout, so a writer waits for the lock instead of failing with "database is
//!   locked";
//! * every write is either one statement (a claim is one `UPDATE ... RETURNING`) or a
//!   transaction opened with `BEGIN IMMEDIATE`. A deferred transaction that reads and then
//!   writes can fail with `SQLITE_BUSY` *without* waiting (its snapshot went stale), which
//!   is the classic source of "database is locked" under concurrency.
//!
//! Timestamps are stored as fixed-width UTC text (see [`ts`]) so that comparing the text
//! compares the instants. "Now" is SQLite's clock, read inside the statement (`now_sql!`):
//! a statement reads it only after it holds the write lock, so times recorded by
//! successive writers are in commit order (a claim's `started_at` is never before the
//! `finished_at` of the deployment it waited for), as with PostgreSQL's `now()`.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{FromRow, QueryBuilder, Row, Sqlite};
use tokio::time::Instant;

use crate::common::{
    self, CLAIM_ATTEMPTS, LOG_CHUNK, Wake, deployment_columns, lock_columns, outbox_columns,
    redact_url,
};
use crate::error::{StoreError, is_unique_violation};
use crate::model::{
    AutoDeploy, AutoDeployPause, CancelResult, ChatMessage, Created, Deployment, DeploymentFilter,
    DeploymentState, LeaseStatus, Lock, LockResult, LogLine, NewDeployment, NewLogLine,
    OutboxEntry, Outcome, Runner, RunningOn,
};
use crate::{Backend, OUTBOX_IN_FLIGHT, Result, SQLITE_POLL_INTERVAL, Store};

/// Migrations embedded at build time.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/sqlite");

/// Connections in the pool: enough for the embedded engine's workers, the HTTP handlers
/// and the log writers to read concurrently (writes queue on SQLite's lock anyway).
const DEFAULT_MAX_CONNECTIONS: u32 = 10;

/// How long a writer waits for SQLite's write lock before giving up. Generous: writes
/// are short, and failing a deploy's bookkeeping because a log batch was being written
/// would be far worse than waiting.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// The SQLite implementation of [`Store`].
pub struct SqliteStore {
    pool: SqlitePool,
    /// The file, for messages.
    location: String,
    /// Wakes claimers of this process at once; other processes find work by polling.
    wake: Wake,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

/// SQLite's "now" in the stored format (milliseconds: the resolution of SQLite's clock).
macro_rules! now_sql {
    () => {
        "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"
    };
}

/// "Now plus a modifier" (bound as `$n`, see [`plus`]) in the stored format.
macro_rules! later_sql {
    ($param:literal) => {
        concat!("strftime('%Y-%m-%dT%H:%M:%fZ', 'now', ", $param, ")")
    };
}

/// A timestamp from the caller, as stored and compared with `now_sql!`: UTC,
/// milliseconds, fixed width, so that text order is time order.
fn ts(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// A log line's timestamp: only ever read back, never compared with the clock, so it
/// keeps the caller's microseconds (as PostgreSQL does).
fn ts_micros(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// An SQLite date modifier adding `duration`, e.g. `+1.500 seconds`.
fn plus(duration: Duration) -> String {
    format!(
        "+{}.{:03} seconds",
        duration.as_secs(),
        duration.subsec_millis()
    )
}

/// A lease as an SQLite date modifier, validated.
fn lease_modifier(op: &str, lease: Duration) -> Result<String> {
    let millis = common::lease_millis(op, lease)?;
    Ok(plus(Duration::from_millis(
        u64::try_from(millis).unwrap_or(1),
    )))
}

fn decode_err(column: &str, detail: impl std::fmt::Display) -> sqlx::Error {
    sqlx::Error::ColumnDecode {
        index: column.to_owned(),
        source: detail.to_string().into(),
    }
}

impl SqliteStore {
    /// Opens (creating if missing, folder included) the database file named by `url`
    /// (`sqlite://path` or `sqlite:path`) and migrates it. `sqlite::memory:` works too, on
    /// one connection (each connection would otherwise see its own empty database).
    pub async fn open(url: &str) -> Result<Self> {
        let location = redact_url(url);
        let memory = url.contains(":memory:") || url.contains("mode=memory");
        let mut options = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::InvalidUrl {
                url: location.clone(),
                detail: e.to_string(),
            })?
            .create_if_missing(true)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT)
            // FULL: a queued deployment or a state change acknowledged to a caller must
            // survive a power cut, not only a crash of the process.
            .synchronous(SqliteSynchronous::Full);
        let pool_options = if memory {
            SqlitePoolOptions::new()
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
        } else {
            options = options.journal_mode(SqliteJournalMode::Wal);
            if let Some(parent) = options.get_filename().parent()
                && !parent.as_os_str().is_empty()
            {
                tokio::fs::create_dir_all(parent)
                    .await
                    .map_err(|e| StoreError::Connect {
                        location: location.clone(),
                        source: sqlx::Error::Io(e),
                    })?;
            }
            SqlitePoolOptions::new().max_connections(DEFAULT_MAX_CONNECTIONS)
        };
        let pool = pool_options
            .acquire_timeout(Duration::from_secs(60))
            .connect_with(options)
            .await
            .map_err(|source| StoreError::Connect {
                location: location.clone(),
                source,
            })?;
        let mut store = SqliteStore::from_pool(pool);
        store.location = location;
        store.migrate().await?;
        Ok(store)
    }

    /// Wraps an existing pool. Does not migrate: call [`Store::migrate`]. The pool should be
    /// configured as [`SqliteStore::open`] does (WAL, busy timeout).
    pub fn from_pool(pool: SqlitePool) -> Self {
        let location = format!(
            "sqlite://{}",
            pool.connect_options().get_filename().display()
        );
        SqliteStore {
            pool,
            location,
            wake: Wake::default(),
        }
    }

    /// The pool, for callers that need their own queries (tests, admin tools).
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Where this store points.
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

    /// Whether a claim could succeed now (a queued deployment whose environment is idle,
    /// or a lapsed lease to reap). Used by the poll in `wait_for_work`.
    async fn work_available(&self) -> Result<bool> {
        sqlx::query_scalar(concat!(
            "SELECT EXISTS (SELECT 1 FROM deployments d WHERE d.state = 'queued' \
                 AND NOT EXISTS (SELECT 1 FROM deployments r \
                     WHERE r.app = d.app AND r.environment = d.environment \
                       AND r.state = 'running')) \
             OR EXISTS (SELECT 1 FROM deployments \
                 WHERE state = 'running' AND lease_expires_at < ",
            now_sql!(),
            ")"
        ))
        .fetch_one(&self.pool)
        .await
        .map_err(|e| StoreError::db("look for claimable work", e))
    }
}

impl<'r> FromRow<'r, SqliteRow> for Deployment {
    fn from_row(row: &'r SqliteRow) -> std::result::Result<Self, sqlx::Error> {
        let state: &str = row.try_get("state")?;
        let payload: &str = row.try_get("payload")?;
        let notify: &str = row.try_get("notify")?;
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
            payload: serde_json::from_str(payload).map_err(|e| decode_err("payload", e))?,
            notify: serde_json::from_str(notify).map_err(|e| decode_err("notify", e))?,
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

impl<'r> FromRow<'r, SqliteRow> for OutboxEntry {
    fn from_row(row: &'r SqliteRow) -> std::result::Result<Self, sqlx::Error> {
        let event: &str = row.try_get("event")?;
        let payload: &str = row.try_get("payload")?;
        Ok(OutboxEntry {
            id: row.try_get("id")?,
            deployment_id: row.try_get("deployment_id")?,
            target: row.try_get("target")?,
            event: DeploymentState::from_str(event).map_err(|e| decode_err("event", e))?,
            payload: serde_json::from_str(payload).map_err(|e| decode_err("payload", e))?,
            created_at: row.try_get("created_at")?,
            due_at: row.try_get("due_at")?,
            attempts: row.try_get("attempts")?,
            last_error: row.try_get("last_error")?,
            delivered_at: row.try_get("delivered_at")?,
        })
    }
}

impl<'r> FromRow<'r, SqliteRow> for Lock {
    fn from_row(row: &'r SqliteRow) -> std::result::Result<Self, sqlx::Error> {
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

impl<'r> FromRow<'r, SqliteRow> for LogLine {
    fn from_row(row: &'r SqliteRow) -> std::result::Result<Self, sqlx::Error> {
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

impl<'r> FromRow<'r, SqliteRow> for ChatMessage {
    fn from_row(row: &'r SqliteRow) -> std::result::Result<Self, sqlx::Error> {
        Ok(ChatMessage {
            deployment_id: row.try_get("deployment_id")?,
            channel: row.try_get("channel")?,
            ts: row.try_get("ts")?,
            updated_at: row.try_get("updated_at")?,
        })
    }
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> Backend {
        Backend::Sqlite
    }

    async fn migrate(&self) -> Result<()> {
        let op = "read the applied migrations";
        let has_table: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master \
             WHERE type = 'table' AND name = '_sqlx_migrations')",
        )
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
        tracing::debug!(location = %self.location, "SQLite schema is up to date");
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
        self.pool.close().await;
    }

    async fn create_deployment(&self, new: NewDeployment) -> Result<Created> {
        common::validate_new(&new)?;
        let op = || format!("create deployment {:?}", new.source_key);
        let notify = serde_json::to_string(&new.notify).map_err(|e| StoreError::InvalidInput {
            op: op(),
            detail: e.to_string(),
        })?;
        let inserted = sqlx::query_as::<_, Deployment>(concat!(
            "INSERT INTO deployments (source_key, github_deployment_id, requester, app, \
             environment, repository, git_ref, sha, task, hosts, provider, payload, notify, \
             timeout_secs, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, ",
            now_sql!(),
            ") ON CONFLICT DO NOTHING RETURNING ",
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
        .bind(new.payload.to_string())
        .bind(notify)
        .bind(new.timeout_secs)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| StoreError::db(op(), e))?;
        if let Some(deployment) = inserted {
            tracing::debug!(id = deployment.id, source_key = %new.source_key, "deployment queued");
            self.wake.signal();
            return Ok(Created {
                deployment,
                already_existed: false,
            });
        }
        let existing = sqlx::query_as::<_, Deployment>(concat!(
            "SELECT ",
            deployment_columns!(),
            " FROM deployments WHERE source_key = $1 \
              OR ($2 IS NOT NULL AND github_deployment_id = $2) \
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
             WHERE ($1 IS NULL OR app = $1) \
               AND ($2 IS NULL OR environment = $2) \
               AND ($3 IS NULL OR state = $3) \
               AND ($4 IS NULL OR id < $4) \
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
               AND ($3 IS NULL OR id < $3) \
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
        let op = || format!("claim a deployment for worker {worker_id}");
        let lease = lease_modifier(&op(), lease)?;
        self.reap_lapsed_leases().await?;
        for _ in 0..CLAIM_ATTEMPTS {
            // One statement: SQLite takes the write lock before evaluating it, so the
            // candidate cannot change under us (and the busy timeout applies).
            let claimed = sqlx::query_as::<_, Deployment>(concat!(
                "UPDATE deployments \
                 SET state = 'running', worker_id = $1, started_at = ",
                now_sql!(),
                ", lease_expires_at = ",
                later_sql!("$2"),
                " WHERE state = 'queued' AND id = ( \
                     SELECT d.id FROM deployments d \
                     WHERE d.state = 'queued' \
                       AND NOT EXISTS (SELECT 1 FROM deployments r \
                           WHERE r.app = d.app AND r.environment = d.environment \
                             AND r.state = 'running') \
                       AND NOT EXISTS (SELECT 1 FROM deployments o \
                           WHERE o.app = d.app AND o.environment = d.environment \
                             AND o.state = 'queued' AND o.id < d.id) \
                     ORDER BY d.id \
                     LIMIT 1) \
                 RETURNING ",
                deployment_columns!()
            ))
            .bind(worker_id)
            .bind(&lease)
            .fetch_optional(&self.pool)
            .await;
            match claimed {
                Ok(Some(deployment)) => {
                    tracing::debug!(id = deployment.id, worker_id, "deployment claimed");
                    return Ok(Some(deployment));
                }
                Ok(None) => return Ok(None),
                // Cannot happen with one writer, but the index is the authority: a refused
                // claim is a lost race, not an error.
                Err(e) if is_unique_violation(&e) => {
                    tracing::debug!(worker_id, "claim lost a race; retrying");
                }
                Err(e) => return Err(StoreError::db(op(), e)),
            }
        }
        Ok(None)
    }

    async fn renew_lease(&self, id: i64, worker_id: &str, lease: Duration) -> Result<LeaseStatus> {
        let op = || format!("renew the lease of deployment {id} for worker {worker_id}");
        let lease = lease_modifier(&op(), lease)?;
        self.reap_lapsed_leases().await?;
        let renewed: Option<Option<String>> = sqlx::query_scalar(concat!(
            "UPDATE deployments SET lease_expires_at = ",
            later_sql!("$3"),
            " WHERE id = $1 AND state = 'running' AND worker_id = $2 \
               AND lease_expires_at >= ",
            now_sql!(),
            " RETURNING cancel_requested_by"
        ))
        .bind(id)
        .bind(worker_id)
        .bind(&lease)
        .fetch_optional(&self.pool)
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
             SET state = $3, exit_code = $4, lease_expires_at = NULL, \
                 reason = COALESCE($5, 'cancelled by ' || cancel_requested_by, 'cancelled'), \
                 finished_at = ",
            now_sql!(),
            " WHERE id = $1 AND state = 'running' AND worker_id = $2 \
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
            self.wake.signal();
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
            "UPDATE deployments SET state = $2, reason = $3, finished_at = ",
            now_sql!(),
            " WHERE id = $1 AND state = 'queued' RETURNING ",
            deployment_columns!()
        ))
        .bind(id)
        .bind(state.as_str())
        .bind(reason)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| StoreError::db(op(), e))?;
        match ended {
            Some(deployment) => {
                // The next deployment of its environment may be claimable now.
                self.wake.signal();
                Ok(deployment)
            }
            None => Err(common::fail_queued_refused(
                id,
                state,
                self.fetch_deployment(&op(), id).await?,
            )),
        }
    }

    async fn request_cancel(&self, id: i64, by: &str) -> Result<CancelResult> {
        let op = || format!("cancel deployment {id} for {by}");
        for _ in 0..3 {
            let cancelled = sqlx::query_as::<_, Deployment>(concat!(
                "UPDATE deployments \
                 SET state = 'cancelled', cancel_requested_by = $2, \
                     reason = 'cancelled by ' || $2, finished_at = ",
                now_sql!(),
                " WHERE id = $1 AND state = 'queued' RETURNING ",
                deployment_columns!()
            ))
            .bind(id)
            .bind(by)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| StoreError::db(op(), e))?;
            if let Some(deployment) = cancelled {
                self.wake.signal();
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
        // Look before writing: every claim reaps first, and a write that finds nothing
        // would still queue for SQLite's single write lock.
        let lapsed: bool = sqlx::query_scalar(concat!(
            "SELECT EXISTS (SELECT 1 FROM deployments \
             WHERE state = 'running' AND lease_expires_at < ",
            now_sql!(),
            ")"
        ))
        .fetch_one(&self.pool)
        .await
        .map_err(|e| StoreError::db("look for lapsed leases", e))?;
        if !lapsed {
            return Ok(Vec::new());
        }
        let reaped = sqlx::query_as::<_, Deployment>(concat!(
            "UPDATE deployments \
             SET state = 'errored', lease_expires_at = NULL, \
                 reason = 'worker lost: ' || worker_id || ' lost its lease (it stopped renewing it)', \
                 finished_at = ",
            now_sql!(),
            " WHERE state = 'running' AND lease_expires_at < ",
            now_sql!(),
            " RETURNING ",
            deployment_columns!()
        ))
        .fetch_all(&self.pool)
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
        if !reaped.is_empty() {
            self.wake.signal();
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
        .execute(&self.pool)
        .await
        .map_err(|e| StoreError::db(op(), e))?;
        Ok(())
    }

    async fn running_runners(&self) -> Result<Vec<RunningOn>> {
        let rows: Vec<(i64, Option<String>, String)> = sqlx::query_as(
            "SELECT id, worker_id, runner FROM deployments \
             WHERE state = 'running' AND runner IS NOT NULL ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(|e| StoreError::db("list where running deployments run", e))?;
        Ok(common::running_on(rows))
    }

    async fn wait_for_work(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let notified = self.wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.work_available().await? {
                return Ok(());
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(());
            }
            let step = (deadline - now).min(SQLITE_POLL_INTERVAL);
            tokio::select! {
                _ = &mut notified => return Ok(()),
                _ = tokio::time::sleep(step) => {}
            }
        }
    }

    async fn append_logs(&self, id: i64, lines: &[NewLogLine]) -> Result<i64> {
        if lines.is_empty() {
            return self.log_count(id).await;
        }
        let op = || format!("append {} log lines to deployment {id}", lines.len());
        let count = i64::try_from(lines.len()).unwrap_or(i64::MAX);
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(|e| StoreError::db(op(), e))?;
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
        let mut seq = last - count;
        for chunk in lines.chunks(LOG_CHUNK) {
            let mut insert = QueryBuilder::<Sqlite>::new(
                "INSERT INTO deployment_logs (deployment_id, seq, stream, line, at) ",
            );
            insert.push_values(chunk, |mut row, line| {
                seq += 1;
                row.push_bind(id)
                    .push_bind(seq)
                    .push_bind(line.stream.as_str())
                    .push_bind(common::clean_line(&line.line).into_owned())
                    .push_bind(ts_micros(line.at));
            });
            insert
                .build()
                .execute(&mut *tx)
                .await
                .map_err(|e| StoreError::db(op(), e))?;
        }
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
                 VALUES ($1, $2, $3, $6, $4, ",
                now_sql!(),
                ", $5) \
                 ON CONFLICT (app, environment) DO UPDATE \
                 SET holder = excluded.holder, holder_id = excluded.holder_id, reason = excluded.reason, \
                     expires_at = excluded.expires_at, \
                     created_at = CASE WHEN COALESCE(locks.holder_id, locks.holder) = COALESCE(excluded.holder_id, excluded.holder) \
                                        AND (locks.expires_at IS NULL OR locks.expires_at > ",
                now_sql!(),
                ") THEN locks.created_at ELSE excluded.created_at END \
                 WHERE COALESCE(locks.holder_id, locks.holder) = COALESCE(excluded.holder_id, excluded.holder) \
                    OR (locks.expires_at IS NOT NULL AND locks.expires_at <= ",
                now_sql!(),
                ") RETURNING ",
                lock_columns!()
            ))
            .bind(app)
            .bind(environment)
            .bind(holder)
            .bind(reason)
            .bind(expires_at.map(ts))
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
        }
        Err(StoreError::Conflict {
            op: op(),
            detail: "the lock kept changing hands; try again".to_owned(),
        })
    }

    async fn unlock(&self, app: &str, environment: &str) -> Result<Option<Lock>> {
        let op = || format!("unlock {app} in {environment}");
        let row = sqlx::query(concat!(
            "DELETE FROM locks WHERE app = $1 AND environment = $2 RETURNING ",
            lock_columns!(),
            ", (expires_at IS NULL OR expires_at > ",
            now_sql!(),
            ") AS in_force"
        ))
        .bind(app)
        .bind(environment)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| StoreError::db(op(), e))?;
        let Some(row) = row else {
            return Ok(None);
        };
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
               AND (expires_at IS NULL OR expires_at > ",
            now_sql!(),
            ")"
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
            " FROM locks WHERE expires_at IS NULL OR expires_at > ",
            now_sql!(),
            " ORDER BY app, environment"
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(|e| StoreError::db("list locks", e))
    }

    async fn record_delivery(&self, delivery_id: &str, event: &str) -> Result<bool> {
        let result = sqlx::query(concat!(
            "INSERT INTO webhook_deliveries (delivery_id, event, received_at) VALUES ($1, $2, ",
            now_sql!(),
            ") ON CONFLICT (delivery_id) DO NOTHING"
        ))
        .bind(delivery_id)
        .bind(event)
        .execute(&self.pool)
        .await
        .map_err(|e| StoreError::db(format!("record webhook delivery {delivery_id:?}"), e))?;
        Ok(result.rows_affected() == 1)
    }

    async fn take_due_outbox(&self, target: &str, limit: i64) -> Result<Vec<OutboxEntry>> {
        let mut entries = sqlx::query_as::<_, OutboxEntry>(concat!(
            "UPDATE outbox SET due_at = ",
            later_sql!("$3"),
            " WHERE id IN ( \
                 SELECT o.id FROM outbox o \
                 WHERE o.target = $1 AND o.delivered_at IS NULL AND o.due_at <= ",
            now_sql!(),
            " \
                   AND NOT EXISTS (SELECT 1 FROM outbox p \
                       WHERE p.target = o.target AND p.deployment_id = o.deployment_id \
                         AND p.delivered_at IS NULL AND p.id < o.id) \
                 ORDER BY o.id \
                 LIMIT $2) \
             RETURNING ",
            outbox_columns!()
        ))
        .bind(target)
        .bind(limit.clamp(1, 1000))
        .bind(plus(OUTBOX_IN_FLIGHT))
        .fetch_all(&self.pool)
        .await
        .map_err(|e| StoreError::db(format!("take due outbox entries for {target}"), e))?;
        entries.sort_by_key(|e| e.id);
        Ok(entries)
    }

    async fn mark_delivered(&self, outbox_id: i64) -> Result<()> {
        let result = sqlx::query(concat!(
            "UPDATE outbox SET delivered_at = COALESCE(delivered_at, ",
            now_sql!(),
            ") WHERE id = $1"
        ))
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
        .bind(ts(retry_at))
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
        // One statement under SQLite's write lock: of several takers, the first resets
        // `created_at` to now and the others find the claim fresh.
        let done = sqlx::query(concat!(
            "INSERT INTO auto_deploys (app, environment, sha, contexts, created_at) VALUES ($1, $2, $3, $4, ",
            now_sql!(),
            ") ON CONFLICT (app, environment, sha) DO UPDATE \
             SET contexts = excluded.contexts, created_at = excluded.created_at \
             WHERE auto_deploys.github_deployment_id IS NULL \
               AND auto_deploys.created_at < ",
            later_sql!("$5")
        ))
        .bind(app)
        .bind(environment)
        .bind(sha)
        .bind(contexts)
        .bind(format!(
            "-{}.{:03} seconds",
            stale_after.as_secs(),
            stale_after.subsec_millis()
        ))
        .execute(&self.pool)
        .await
        .map_err(|e| StoreError::db(format!("claim the auto-deploy of {sha} to {app} {environment}"), e))?;
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
            now_sql!(),
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
        let result = sqlx::query(concat!(
            "INSERT INTO chat_messages (deployment_id, channel, ts, updated_at) \
             SELECT id, $2, $3, ",
            now_sql!(),
            " FROM deployments WHERE id = $1 \
             ON CONFLICT (deployment_id) DO UPDATE \
             SET channel = excluded.channel, ts = excluded.ts, updated_at = excluded.updated_at"
        ))
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
        .bind(ts(expires_at))
        .bind(uses_left)
        .execute(&self.pool)
        .await
        .map_err(|e| StoreError::db(op(), e))?;
        Ok(())
    }

    async fn use_chat_route(&self, source_key: &str) -> Result<Option<String>> {
        sqlx::query_scalar::<_, String>(concat!(
            "UPDATE chat_routes SET uses_left = uses_left - 1 \
             WHERE source_key = $1 AND uses_left > 0 AND expires_at > ",
            now_sql!(),
            " RETURNING response_url"
        ))
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
