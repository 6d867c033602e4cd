//! Group commit of concurrent deployment creations (PostgreSQL).
//!
//! A webhook's 201 means its deployment is durably stored, so each creation waits
//! for a commit, and a commit waits for a WAL flush. With one statement per
//! webhook, 64 webhooks at once cost 64 statements, 64 commits and 64 flushes, and
//! bench/run measured faseng at 0.36x of plain inserts. Here creations that arrive
//! while a statement runs wait for the next one and go in together: one
//! multi-row `INSERT ... SELECT FROM unnest(...)`, one commit, one flush. A
//! creation alone goes at once, in a statement of its own, so nothing waits for
//! company. Each caller still hears back only after the commit that holds its row,
//! so its 2xx still means stored.
//!
//! What one insert guarantees, a group does too: creations in one app+environment
//! take that environment's advisory lock before any id is drawn (in the order of
//! the lock keys, so two groups never wait on each other in a cycle), so ids there
//! are in commit order; `ON CONFLICT DO NOTHING` skips a duplicate (also one inside
//! the group) and the caller finds the row that was there. When a group statement
//! fails for any reason, its creations are tried again one by one, so that each
//! gets its own answer and one bad row never fails the others.
//!
//! Each lane has a connection of its own, outside the pool ([`LaneConn`]): a
//! webhook's creation is one round trip with PostgreSQL, not the pool's three.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection, PgPool};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::Result;
use crate::common::{deployment_columns, new_deployment_columns};
use crate::dialect::clock_sql;
use crate::error::StoreError;
use crate::model::{Deployment, NewDeployment};

/// Creations in one statement at most. Each payload is at most what a webhook
/// carries (faseng reads bodies up to 1 MB), so a group's statement stays bounded.
pub(crate) const MAX_GROUP: usize = 32;

/// Lanes, each with its own queue and one statement in flight. A creation's lane
/// is chosen by its app+environment, so two lanes never wait for each other's
/// advisory locks (which are held through the commit's WAL flush): their commits
/// overlap, and PostgreSQL flushes them together. One lane for everything
/// measured 2.4x fewer webhooks a second than no grouping (bench/run), each group
/// waiting out the previous one's flush.
const LANES: usize = 6;

/// One creation waiting for its statement.
struct Pending {
    new: NewDeployment,
    reply: oneshot::Sender<Result<Option<Deployment>>>,
    /// When it was queued: a lane waits for PostgreSQL at most [`CONNECT_TIMEOUT`]
    /// from the oldest creation of its group, not from when the group's turn came.
    since: Instant,
}

/// The lanes of one store: a queue and a task each, started on first use.
#[derive(Default)]
pub(crate) struct Group {
    senders: Mutex<Vec<mpsc::UnboundedSender<Pending>>>,
    lanes: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

/// The lane of app+environment.
fn lane_of(new: &NewDeployment) -> usize {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (&new.app, &new.environment).hash(&mut h);
    (h.finish() % LANES as u64) as usize
}

/// The SQL of one creation alone (also what a failed group falls back to).
/// Ids come from a sequence, and a sequence hands out numbers in the order inserts
/// ask, not the order they commit: #2 could commit after #3, and a claimer that saw
/// only #3 would start it first. The advisory lock (held until this statement
/// commits, and taken before the id is drawn) makes creation in one app+environment
/// one at a time, so there ids are in commit order and "oldest first" holds. Other
/// environments do not wait.
pub(crate) const SINGLE_SQL: &str = concat!(
    "WITH serial AS (SELECT pg_advisory_xact_lock($15, hashtext($4 || E'\\n' || $5))) \
     INSERT INTO deployments (",
    new_deployment_columns!(),
    ") SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, ",
    clock_sql!(pg),
    " FROM serial ON CONFLICT DO NOTHING RETURNING ",
    deployment_columns!()
);

/// The SQL of a group: the same row shape from arrays, every environment's lock
/// taken (in key order) before the first row is inserted, rows in their order.
/// `notify` travels as one JSON array per row (PostgreSQL's arrays of arrays must
/// be rectangular).
const GROUP_SQL: &str = concat!(
    "WITH input AS (SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], \
       $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], \
       $12::jsonb[], $13::jsonb[], $14::bigint[]) WITH ORDINALITY AS i (source_key, \
       github_deployment_id, requester, app, environment, repository, git_ref, sha, task, hosts, \
       provider, payload, notify, timeout_secs, ord)), \
     keys AS (SELECT DISTINCT hashtext(app || E'\\n' || environment) AS k FROM input), \
     serial AS (SELECT pg_advisory_xact_lock($15, k) FROM (SELECT k FROM keys ORDER BY k) AS o), \
     locked AS (SELECT count(*) AS n FROM serial) \
     INSERT INTO deployments (",
    new_deployment_columns!(),
    ") SELECT i.source_key, i.github_deployment_id, i.requester, i.app, i.environment, \
       i.repository, i.git_ref, i.sha, i.task, i.hosts, i.provider, i.payload, \
       ARRAY(SELECT jsonb_array_elements_text(i.notify)), i.timeout_secs, ",
    clock_sql!(pg),
    " FROM input AS i CROSS JOIN locked ORDER BY i.ord ON CONFLICT DO NOTHING RETURNING ",
    deployment_columns!()
);

impl Group {
    /// Stores `new` with whatever creations arrive meanwhile: the row, or `None`
    /// when its source key or GitHub id was there already.
    pub(crate) async fn insert(
        &self,
        pool: &PgPool,
        lock_class: i32,
        new: NewDeployment,
    ) -> Result<Option<Deployment>> {
        let (reply, answer) = oneshot::channel();
        let lane = lane_of(&new);
        let pending = Pending {
            new,
            reply,
            since: Instant::now(),
        };
        let pending = match self.queue(pool, lock_class, lane) {
            Some(tx) => match tx.send(pending) {
                Ok(()) => {
                    return answer.await.unwrap_or_else(|_| {
                        Err(StoreError::db(
                            "create deployment",
                            sqlx::Error::WorkerCrashed,
                        ))
                    });
                }
                Err(mpsc::error::SendError(p)) => p,
            },
            None => pending,
        };
        // No lanes (the store is closing): alone, here.
        single(pool, lock_class, &pending.new)
            .await
            .map_err(|e| creation_failed(&pending.new, e))
    }

    /// Lane `n`'s sender, with the lanes started if they are not all running.
    fn queue(
        &self,
        pool: &PgPool,
        lock_class: i32,
        n: usize,
    ) -> Option<mpsc::UnboundedSender<Pending>> {
        let mut senders = self.senders.lock().ok()?;
        let mut lanes = self.lanes.lock().ok()?;
        if senders.len() == LANES && lanes.iter().all(|l| !l.is_finished()) {
            return senders.get(n).cloned();
        }
        for lane in lanes.drain(..) {
            lane.abort();
        }
        senders.clear();
        for _ in 0..LANES {
            let (tx, rx) = mpsc::unbounded_channel();
            lanes.push(tokio::spawn(lane(pool.clone(), lock_class, rx)));
            senders.push(tx);
        }
        senders.get(n).cloned()
    }

    /// Stops the lanes; creations still queued get an error (closing store).
    pub(crate) fn stop(&self) {
        if let Ok(mut senders) = self.senders.lock() {
            senders.clear();
        }
        if let Ok(mut lanes) = self.lanes.lock() {
            for lane in lanes.drain(..) {
                lane.abort();
            }
        }
    }
}

/// How long a lane keeps trying to connect, as the pool kept trying within its acquire
/// timeout: a PostgreSQL restart or failover shorter than this costs webhooks a wait,
/// not a 503 (GitHub does not redeliver a failed webhook by itself); a longer outage
/// answers 503 before GitHub's 10 s delivery timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// One lane: takes what is queued (up to [`MAX_GROUP`]), stores it on the lane's
/// own connection, answers.
async fn lane(pool: PgPool, lock_class: i32, mut rx: mpsc::UnboundedReceiver<Pending>) {
    let mut conn = LaneConn {
        options: (*pool.connect_options()).clone(),
        live: None,
    };
    // Connected ahead, as the announcer is: a new connection (TLS, authentication)
    // costs more than the statement it would carry.
    let _ = conn.get(Instant::now() + CONNECT_TIMEOUT).await;
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(p) => batch.push(p),
                Err(_) => break,
            }
        }
        store(&mut conn, lock_class, batch).await;
    }
}

/// A lane's connection: its own, outside the pool. sqlx's pool sends a round trip
/// (`Sync`, answered by `ReadyForQuery`) when it lends a connection and another when
/// it takes it back, so a creation through the pool cost three round trips with its
/// backend, each a wake-up that waits for a CPU on a busy machine; on its own
/// connection a creation costs one. A connection found broken (the server restarted,
/// something on the way dropped it) is replaced and the statement sent once more:
/// a creation is idempotent (`ON CONFLICT DO NOTHING` on the source key and the
/// GitHub id), so one that committed before its answer was lost finds its row the
/// second time, as a redelivery would.
struct LaneConn {
    options: PgConnectOptions,
    live: Option<PgConnection>,
}

impl LaneConn {
    /// The connection, made first if there is none: tried again, with a growing pause,
    /// until `deadline`.
    async fn get(
        &mut self,
        deadline: Instant,
    ) -> std::result::Result<&mut PgConnection, sqlx::Error> {
        let conn = match self.live.take() {
            Some(c) => c,
            None => self.connect(deadline).await?,
        };
        Ok(self.live.insert(conn))
    }

    async fn connect(&self, deadline: Instant) -> std::result::Result<PgConnection, sqlx::Error> {
        let mut pause = Duration::from_millis(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let error =
                match tokio::time::timeout(left, PgConnection::connect_with(&self.options)).await {
                    Ok(Ok(conn)) => return Ok(conn),
                    Ok(Err(e)) => e,
                    Err(_) => sqlx::Error::PoolTimedOut,
                };
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(error);
            }
            tokio::time::sleep(pause.min(left)).await;
            pause = (pause * 2).min(Duration::from_millis(500));
        }
    }

    /// Stores `what` on the connection; when the connection turns out broken (or
    /// cannot be made), once more on a new one. A broken connection is never kept.
    async fn store(
        &mut self,
        deadline: Instant,
        lock_class: i32,
        what: Creations<'_>,
    ) -> std::result::Result<Vec<Deployment>, sqlx::Error> {
        let mut tried = false;
        loop {
            let result = match self.get(deadline).await {
                Ok(c) => match what {
                    Creations::One(new) => single(c, lock_class, new)
                        .await
                        .map(|row| row.into_iter().collect()),
                    Creations::Group(batch) => together(c, lock_class, batch).await,
                },
                Err(e) => Err(e),
            };
            match result {
                // `broken` first: it forgets the connection whether or not we retry.
                Err(e) if self.broken(&e) && !tried => tried = true,
                done => return done,
            }
        }
    }

    /// After `e`: forgets the connection when `e` says it is broken, and says so.
    fn broken(&mut self, e: &sqlx::Error) -> bool {
        let broken = match e {
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::WorkerCrashed => true,
            // Connection exceptions (08) and the server shutting down (57P01-57P03).
            sqlx::Error::Database(d) => d
                .code()
                .is_some_and(|c| c.starts_with("08") || c.starts_with("57P")),
            _ => false,
        };
        if broken {
            self.live = None;
        }
        broken
    }
}

async fn store(conn: &mut LaneConn, lock_class: i32, mut batch: Vec<Pending>) {
    // The queue is first in, first out: the first is the oldest.
    let deadline = batch.first().map_or_else(Instant::now, |p| p.since) + CONNECT_TIMEOUT;
    if batch.len() == 1 {
        if let Some(p) = batch.pop() {
            let _ = p
                .reply
                .send(single_on(conn, deadline, lock_class, &p.new).await);
        }
        return;
    }
    // Rows in source-key order: two groups holding duplicates of each other's
    // rows then wait on them in one order, never in a cycle.
    batch.sort_by(|a, b| a.new.source_key.cmp(&b.new.source_key));
    let result = conn
        .store(deadline, lock_class, Creations::Group(&batch))
        .await;
    match result {
        Ok(rows) => {
            let mut by_key: HashMap<String, Deployment> = rows
                .into_iter()
                .map(|d| (d.source_key.clone(), d))
                .collect();
            for p in batch {
                let row = by_key.remove(&p.new.source_key);
                let _ = p.reply.send(Ok(row));
            }
        }
        Err(e) => {
            tracing::debug!(error = %e, rows = batch.len(), "a group of creations failed; storing them one by one");
            for p in batch {
                let answer = single_on(conn, deadline, lock_class, &p.new).await;
                let _ = p.reply.send(answer);
            }
        }
    }
}

/// What a lane sends in one statement: a creation alone, or a group.
#[derive(Clone, Copy)]
enum Creations<'a> {
    One(&'a NewDeployment),
    Group(&'a [Pending]),
}

/// One creation alone on the lane's connection.
async fn single_on(
    conn: &mut LaneConn,
    deadline: Instant,
    lock_class: i32,
    new: &NewDeployment,
) -> Result<Option<Deployment>> {
    conn.store(deadline, lock_class, Creations::One(new))
        .await
        .map(|rows| rows.into_iter().next())
        .map_err(|e| creation_failed(new, e))
}

fn creation_failed(new: &NewDeployment, e: sqlx::Error) -> StoreError {
    StoreError::db(format!("create deployment {:?}", new.source_key), e)
}

/// One creation alone, on a lane's connection or through the pool (when the lanes
/// are stopped).
async fn single<'e>(
    db: impl sqlx::PgExecutor<'e>,
    lock_class: i32,
    new: &NewDeployment,
) -> std::result::Result<Option<Deployment>, sqlx::Error> {
    crate::PgStore::insert_query(SINGLE_SQL, new)
        .bind(lock_class)
        .fetch_optional(db)
        .await
}

async fn together(
    conn: &mut PgConnection,
    lock_class: i32,
    batch: &[Pending],
) -> std::result::Result<Vec<Deployment>, sqlx::Error> {
    let col = |f: fn(&NewDeployment) -> String| -> Vec<String> {
        batch.iter().map(|p| f(&p.new)).collect()
    };
    let opt = |f: fn(&NewDeployment) -> Option<String>| -> Vec<Option<String>> {
        batch.iter().map(|p| f(&p.new)).collect()
    };
    sqlx::query_as::<_, Deployment>(GROUP_SQL)
        .bind(col(|n| n.source_key.clone()))
        .bind(
            batch
                .iter()
                .map(|p| p.new.github_deployment_id)
                .collect::<Vec<_>>(),
        )
        .bind(col(|n| n.requester.clone()))
        .bind(col(|n| n.app.clone()))
        .bind(col(|n| n.environment.clone()))
        .bind(col(|n| n.repository.clone()))
        .bind(col(|n| n.git_ref.clone()))
        .bind(opt(|n| n.sha.clone()))
        .bind(col(|n| n.task.clone()))
        .bind(opt(|n| n.hosts.clone()))
        .bind(col(|n| n.provider.clone()))
        .bind(
            batch
                .iter()
                .map(|p| p.new.payload.clone())
                .collect::<Vec<_>>(),
        )
        .bind(
            batch
                .iter()
                .map(|p| serde_json::json!(p.new.notify))
                .collect::<Vec<_>>(),
        )
        .bind(batch.iter().map(|p| p.new.timeout_secs).collect::<Vec<_>>())
        .bind(lock_class)
        .fetch_all(conn)
        .await
}
