//! The PostgreSQL store: production, shared by every faseng process.
//!
//! Claims use `FOR UPDATE SKIP LOCKED` so that claimers on many machines never wait on
//! each other; the partial unique index on running deployments settles any race that
//! slips through. Wake-ups use LISTEN/NOTIFY on [`WORK_CHANNEL`], so a deployment queued
//! by any process wakes idle claimers in every process. A new deployment's NOTIFY is sent
//! after its insert commits, by one task per process that folds a burst of inserts into
//! one NOTIFY (`Announcer`): a NOTIFY inside the insert's transaction would take
//! PostgreSQL's global notification lock at commit and hold it through the WAL flush, so
//! that concurrent webhooks committed one at a time (bench/run: 6x fewer inserts a
//! second at 64 at once). The end of a deployment still NOTIFYs from the trigger; those
//! come at the pace of deploys.
//!
//! Times come from the database's clock, so that processes on machines with skewed
//! clocks agree on leases. The times a deployment records (`started_at`, `finished_at`,
//! its lease) use `clock_timestamp()`, not `now()`: `now()` is when the transaction
//! began, which can be before the snapshot that saw the previous deployment finish, and
//! would let a claim record a start earlier than the finish it waited for.

use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::common::{
    self, Wake, deployment_columns, new_awaiting_columns, redact_url, reserve_log_seqs_sql,
};
use crate::dialect::{Dialect, clock_sql};
use crate::error::StoreError;
use crate::group::Group;
use crate::model::{ApprovalNeed, Deployment, NewDeployment, NewLogLine};
use crate::shared::impl_store;
use crate::{Backend, Result};

/// Migrations embedded at build time.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/postgres");

/// The NOTIFY channel the trigger signals when work may have become claimable.
pub const WORK_CHANNEL: &str = "faseng_work";

/// Connections per process by default: a few workers, the HTTP handlers, one listener.
const DEFAULT_MAX_CONNECTIONS: u32 = 10;

/// Lines per COPY message when appending logs: bounds one message's size.
const PG_LOG_CHUNK: usize = 5000;

/// Most lines a log batch stores with one `INSERT ... unnest` instead of COPY.
/// A running deploy sends a few lines every 100 ms (`logsink.rs`); such a batch
/// is one statement and one round trip, where COPY takes five (BEGIN, the
/// sequence numbers, COPY, its data and end, COMMIT) and, with sqlx 0.9.0, 40 ms
/// more: that release stopped setting `TCP_NODELAY` (sqlx issue #4335, fixed by
/// #4336 after 0.9.0), so the end of the COPY data, a second small write before
/// any answer, waits for the server's delayed ACK. bench/run saw every COPY take
/// 43 ms (`pg_stat_statements`) while holding the deployment's row lock. Larger
/// batches (a provider printing fast) keep COPY, which parses them faster.
const PG_INSERT_LINES: usize = 256;

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

/// The PostgreSQL implementation of [`Store`](crate::Store).
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
    /// Tells the other processes that work was queued, after the commit.
    announcer: Announcer,
    /// Concurrent creations, stored together (`group.rs`).
    group: Group,
}

impl Drop for PgStore {
    fn drop(&mut self) {
        if let Ok(mut guard) = self.listener.lock()
            && let Some(handle) = guard.take()
        {
            handle.abort();
        }
        self.announcer.stop();
        self.group.stop();
    }
}

/// Sends `NOTIFY faseng_work` on behalf of committed inserts, outside their
/// transactions: at most one in flight, and one more after it when inserts committed
/// meanwhile, so a burst of a thousand webhooks costs a few NOTIFYs. A NOTIFY lost to a
/// crash between the commit and the send delays the other processes until their next
/// poll; this process's own claimers are woken directly.
#[derive(Default)]
struct Announcer {
    due: Arc<tokio::sync::Notify>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Announcer {
    /// Asks for a NOTIFY soon; (re)starts the task if it is not running.
    fn announce(&self, pool: &PgPool) {
        // `notify_one` keeps one permit when the task is busy sending: the next send
        // then covers every insert that committed meanwhile.
        self.due.notify_one();
        self.start(pool);
    }

    /// Starts the task (and its connection) unless it runs; outside a runtime, the
    /// first [`Announcer::announce`] does.
    fn start(&self, pool: &PgPool) {
        if tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        let Ok(mut task) = self.task.lock() else {
            return;
        };
        if task.as_ref().is_some_and(|t| !t.is_finished()) {
            return;
        }
        let (due, pool) = (Arc::clone(&self.due), pool.clone());
        *task = Some(tokio::spawn(announce_loop(due, pool)));
    }

    fn stop(&self) {
        if let Ok(mut task) = self.task.lock()
            && let Some(t) = task.take()
        {
            t.abort();
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
            .acquire_timeout(Duration::from_secs(5)); // under GitHub's 10 s webhook timeout: 503, not a hang
        PgStore::connect_and_migrate(pool, options, location).await
    }

    /// Wraps an existing pool (tests, or a caller that tunes the pool). Does not migrate:
    /// call [`Store::migrate`](crate::Store::migrate).
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
        let store = PgStore {
            pool,
            lease_pool,
            location,
            wake: Arc::new(Wake::default()),
            listener: Mutex::new(None),
            announcer: Announcer::default(),
            group: Group::default(),
        };
        store.announcer.start(&store.pool);
        store
    }

    /// The pool, for callers that need their own queries (tests, admin tools).
    pub fn pool(&self) -> &PgPool {
        &self.pool
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

/// The announcer's task: a connection of its own (a burst of webhooks holding the
/// pool must not hold the NOTIFY back), opened when first needed and again after an
/// error.
async fn announce_loop(due: Arc<tokio::sync::Notify>, pool: PgPool) {
    use sqlx::Connection;
    let options = (*pool.connect_options()).clone();
    // Connected ahead: a new connection takes a good part of the 100 ms a NOTIFY may take.
    let mut conn = sqlx::PgConnection::connect_with(&options).await.ok();
    loop {
        due.notified().await;
        if pool.is_closed() {
            return;
        }
        let c = match conn.as_mut() {
            Some(c) => c,
            None => match sqlx::PgConnection::connect_with(&options).await {
                Ok(c) => conn.insert(c),
                Err(e) => {
                    // Other processes find the work on their next poll.
                    tracing::debug!(error = %e, "cannot connect to NOTIFY {WORK_CHANNEL}");
                    continue;
                }
            },
        };
        if let Err(e) = sqlx::query("SELECT pg_notify($1, '')")
            .bind(WORK_CHANNEL)
            .execute(&mut *c)
            .await
        {
            tracing::debug!(error = %e, "cannot NOTIFY {WORK_CHANNEL}");
            conn = None;
        }
    }
}

impl Dialect for PgStore {
    const BACKEND: Backend = Backend::Postgres;
    const NAME: &'static str = "PostgreSQL";

    type Db = sqlx::Postgres;
    type Ts = DateTime<Utc>;
    /// Seconds, for `make_interval(secs => $n)`.
    type Interval = f64;

    fn ts(t: DateTime<Utc>) -> DateTime<Utc> {
        t
    }

    fn interval(duration: Duration) -> f64 {
        duration.as_secs_f64()
    }

    fn interval_ago(duration: Duration) -> f64 {
        -duration.as_secs_f64()
    }

    fn work_changed(&self) {
        // This process's claimers now; the others once the NOTIFY arrives.
        self.wake.signal();
        self.announcer.announce(&self.pool);
    }
}

impl_store!(PgStore, pg, lease_pool: lease_pool);

/// What PostgreSQL does its own way; the rest of `Store` is in `shared.rs`.
impl PgStore {
    /// Inserts `new`, or nothing on a conflict (an existing source key or GitHub id).
    async fn insert_deployment(
        &self,
        op: &str,
        new: &NewDeployment,
        approval: Option<&ApprovalNeed>,
    ) -> Result<Option<Deployment>> {
        if let Some(approval) = approval {
            // A deployment to wait for approval: rare, at the pace of people, so alone
            // in its statement, with the same ordering lock as the group's (`group.rs`).
            const SQL: &str = concat!(
                "WITH serial AS (SELECT pg_advisory_xact_lock($19, hashtext($4 || E'\\n' || $5))) \
                 INSERT INTO deployments (",
                new_awaiting_columns!(),
                ") SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, ",
                clock_sql!(pg),
                " FROM serial ON CONFLICT DO NOTHING RETURNING ",
                deployment_columns!()
            );
            return Self::insert_awaiting_query(SQL, new, approval)
                .bind(CREATE_LOCK_CLASS)
                .fetch_optional(&self.pool)
                .await
                .map_err(|e| StoreError::db(op, e));
        }
        // Through the group commit (`group.rs`): concurrent creations share a
        // statement and a commit; each caller hears back after the commit.
        self.group
            .insert(&self.pool, CREATE_LOCK_CLASS, new.clone())
            .await
    }

    /// Ends every running deployment whose lease has lapsed, on the lease connections.
    async fn reap(&self) -> Result<Vec<Deployment>> {
        self.end_lapsed_leases().await
    }

    async fn wait(&self, timeout: Duration) -> Result<()> {
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

    async fn write_logs(&self, id: i64, lines: &[NewLogLine]) -> Result<i64> {
        if lines.len() <= PG_INSERT_LINES {
            return self.insert_logs(id, lines).await;
        }
        let op = || format!("append {} log lines to deployment {id}", lines.len());
        let count = i64::try_from(lines.len()).unwrap_or(i64::MAX);
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(|e| StoreError::db(op(), e))?;
        let last = Self::reserve_log_seqs(&mut tx, &op(), id, count).await?;
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

    /// A small batch in one statement (see [`PG_INSERT_LINES`]): the sequence
    /// numbers taken and the rows inserted together, so the deployment's row is
    /// locked only for the statement and concurrent appenders still get
    /// disjoint ranges. `None` from the statement: no such deployment.
    async fn insert_logs(&self, id: i64, lines: &[NewLogLine]) -> Result<i64> {
        let count = i64::try_from(lines.len()).unwrap_or(i64::MAX);
        let streams: Vec<&str> = lines.iter().map(|l| l.stream.as_str()).collect();
        let texts: Vec<String> = lines
            .iter()
            .map(|l| common::clean_line(&l.line).into_owned())
            .collect();
        let ats: Vec<DateTime<Utc>> = lines.iter().map(|l| l.at).collect();
        let last: Option<i64> = sqlx::query_scalar(concat!(
            "WITH seq AS (",
            reserve_log_seqs_sql!(),
            "), rows AS ( \
                 INSERT INTO deployment_logs (deployment_id, seq, stream, line, at) \
                 SELECT $1, seq.log_seq - $2 + l.n, l.stream, l.line, l.at \
                 FROM seq, unnest($3::text[], $4::text[], $5::timestamptz[]) \
                      WITH ORDINALITY AS l(stream, line, at, n) \
             ) \
             SELECT log_seq FROM seq",
        ))
        .bind(id)
        .bind(count)
        .bind(&streams)
        .bind(&texts)
        .bind(&ats)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| {
            let op = format!("append {count} log lines to deployment {id}");
            StoreError::db(op, e)
        })?;
        last.ok_or_else(|| StoreError::not_found(format!("deployment {id}")))
    }

    async fn shut_down(&self) {
        if let Ok(mut guard) = self.listener.lock()
            && let Some(handle) = guard.take()
        {
            handle.abort();
        }
        self.group.stop();
        self.pool.close().await;
        self.lease_pool.close().await;
    }
}
