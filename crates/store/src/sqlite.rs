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
//! Timestamps are stored as fixed-width UTC text (see `ts`) so that comparing the text
//! compares the instants. "Now" is SQLite's clock, read inside the statement (`now_sql!(sqlite)`):
//! a statement reads it only after it holds the write lock, so times recorded by
//! successive writers are in commit order (a claim's `started_at` is never before the
//! `finished_at` of the deployment it waited for), as with PostgreSQL's `now()`.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{QueryBuilder, Sqlite};
use tokio::time::Instant;

use crate::common::{
    self, LOG_CHUNK, Wake, deployment_columns, new_awaiting_columns, new_deployment_columns,
    redact_url,
};
use crate::dialect::{Dialect, now_sql};
use crate::error::StoreError;
use crate::model::{ApprovalNeed, Deployment, NewDeployment, NewLogLine};
use crate::shared::impl_store;
use crate::{Backend, Result, SQLITE_POLL_INTERVAL};

/// Migrations embedded at build time.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/sqlite");

/// Connections in the pool: enough for the embedded engine's workers, the HTTP handlers
/// and the log writers to read concurrently (writes queue on SQLite's lock anyway).
const DEFAULT_MAX_CONNECTIONS: u32 = 10;

/// How long a writer waits for SQLite's write lock before giving up. Generous: writes
/// are short, and failing a deploy's bookkeeping because a log batch was being written
/// would be far worse than waiting.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// The SQLite implementation of [`Store`](crate::Store).
pub struct SqliteStore {
    pool: SqlitePool,
    /// The file, for messages.
    location: String,
    /// Wakes claimers of this process at once; other processes find work by polling.
    wake: Wake,
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
        let pool = pool_options.acquire_timeout(Duration::from_secs(60));
        SqliteStore::connect_and_migrate(pool, options, location).await
    }

    /// Wraps an existing pool. Does not migrate: call [`Store::migrate`](crate::Store::migrate). The pool should be
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

    /// Whether a claim could succeed now (a queued deployment whose environment is idle,
    /// or a lapsed lease to reap). Used by the poll in `wait_for_work`.
    async fn work_available(&self) -> Result<bool> {
        sqlx::query_scalar(concat!(
            "SELECT EXISTS (SELECT 1 FROM deployments d WHERE d.state = 'queued' \
                 AND (d.task = 'deploy:noop' OR NOT EXISTS (SELECT 1 FROM deployments r \
                     WHERE r.app = d.app AND r.environment = d.environment \
                       AND r.state = 'running' AND r.task <> 'deploy:noop'))) \
             OR EXISTS (SELECT 1 FROM deployments \
                 WHERE state = 'running' AND lease_expires_at < ",
            now_sql!(sqlite),
            ") OR EXISTS (SELECT 1 FROM deployments \
                 WHERE state = 'awaiting_approval' AND approval_expires_at < ",
            now_sql!(sqlite),
            ")"
        ))
        .fetch_one(&self.pool)
        .await
        .map_err(|e| StoreError::db("look for claimable work", e))
    }
}

/// An SQLite date modifier of `sign` and `duration`, e.g. `+1.500 seconds`.
fn modifier(sign: char, duration: Duration) -> String {
    format!(
        "{sign}{}.{:03} seconds",
        duration.as_secs(),
        duration.subsec_millis()
    )
}

impl Dialect for SqliteStore {
    const BACKEND: Backend = Backend::Sqlite;
    const NAME: &'static str = "SQLite";

    type Db = Sqlite;
    /// See [`ts`].
    type Ts = String;
    /// A date modifier for `strftime(..., 'now', $n)`.
    type Interval = String;

    fn ts(t: DateTime<Utc>) -> String {
        ts(t)
    }

    fn interval(duration: Duration) -> String {
        modifier('+', duration)
    }

    fn interval_ago(duration: Duration) -> String {
        modifier('-', duration)
    }

    fn work_changed(&self) {
        self.wake.signal();
    }
}

impl_store!(SqliteStore, sqlite, lease_pool: pool);

/// What SQLite does its own way; the rest of `Store` is in `shared.rs`.
impl SqliteStore {
    /// Inserts `new`, or nothing on a conflict (an existing source key or GitHub id).
    async fn insert_deployment(
        &self,
        op: &str,
        new: &NewDeployment,
        approval: Option<&ApprovalNeed>,
    ) -> Result<Option<Deployment>> {
        // SQLite's one writer commits inserts in the order it draws their ids: no
        // ordering lock is needed.
        const SQL: &str = concat!(
            "INSERT INTO deployments (",
            new_deployment_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, ",
            now_sql!(sqlite),
            ") ON CONFLICT DO NOTHING RETURNING ",
            deployment_columns!()
        );
        const AWAITING_SQL: &str = concat!(
            "INSERT INTO deployments (",
            new_awaiting_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, ",
            now_sql!(sqlite),
            ") ON CONFLICT DO NOTHING RETURNING ",
            deployment_columns!()
        );
        match approval {
            Some(approval) => Self::insert_awaiting_query(AWAITING_SQL, new, approval),
            None => Self::insert_query(SQL, new),
        }
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| StoreError::db(op, e))
    }

    /// Ends every running deployment whose lease has lapsed.
    async fn reap(&self) -> Result<Vec<Deployment>> {
        // Look before writing: every claim reaps first, and a write that finds nothing
        // would still queue for SQLite's single write lock.
        let lapsed: bool = sqlx::query_scalar(concat!(
            "SELECT EXISTS (SELECT 1 FROM deployments \
             WHERE state = 'running' AND lease_expires_at < ",
            now_sql!(sqlite),
            ")"
        ))
        .fetch_one(&self.pool)
        .await
        .map_err(|e| StoreError::db("look for lapsed leases", e))?;
        if !lapsed {
            return Ok(Vec::new());
        }
        self.end_lapsed_leases().await
    }

    async fn wait(&self, timeout: Duration) -> Result<()> {
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

    async fn write_logs(&self, id: i64, lines: &[NewLogLine]) -> Result<i64> {
        let op = || format!("append {} log lines to deployment {id}", lines.len());
        let count = i64::try_from(lines.len()).unwrap_or(i64::MAX);
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(|e| StoreError::db(op(), e))?;
        let last = Self::reserve_log_seqs(&mut tx, &op(), id, count).await?;
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

    async fn shut_down(&self) {
        self.pool.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_are_date_modifiers_in_milliseconds() {
        assert_eq!(
            SqliteStore::interval(Duration::from_millis(1500)),
            "+1.500 seconds"
        );
        assert_eq!(
            SqliteStore::interval_ago(Duration::from_secs(600)),
            "-600.000 seconds"
        );
        let lease = SqliteStore::lease("t", Duration::from_micros(2_000_900)).ok();
        assert_eq!(lease.as_deref(), Some("+2.000 seconds"));
    }
}
