//! The baseline: the rows faseng stores, inserted into the same PostgreSQL by
//! a plain loop, at the same concurrency, with the same number of database
//! connections as faseng's pool. It runs as its own process (`chima-bench
//! baseline`) so that its start time and memory are measured like faseng's,
//! and it takes one command per line on stdin, so that `run` can measure it
//! right before the faseng figure it is compared with (the machine is shared:
//! what else runs changes from one minute to the next).
//!
//! Protocol: it prints `ready` once it has connected and run `SELECT 1`; then
//! for each command line it prints one line of JSON:
//!
//! * `burst <n> <concurrency>`: closed loop, n rows
//! * `paced <rate> <secs>`: open loop at rate rows per second
//! * `single <n>`: n rows one at a time, 10 ms apart
//! * `logs <n>`: n log rows in batches of 2,000 on one connection
//! * `quit`: its peak memory, then it exits

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, Executor, PgPool};
use tokio::io::AsyncBufReadExt;
use tokio::time::Instant;

use crate::fixture::{self, Script};
use crate::util::Latency;

/// What one command measured.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Measured {
    /// Rows per second.
    pub rate: f64,
    pub latency: LatencyRecord,
    /// `quit` only.
    pub peak_mb: f64,
}

/// [`Latency`] that also reads back from JSON.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct LatencyRecord {
    pub count: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl From<Latency> for LatencyRecord {
    fn from(l: Latency) -> Self {
        LatencyRecord {
            count: l.count,
            p50_ms: l.p50_ms,
            p99_ms: l.p99_ms,
            max_ms: l.max_ms,
        }
    }
}

impl From<LatencyRecord> for Latency {
    fn from(l: LatencyRecord) -> Self {
        Latency {
            count: l.count,
            p50_ms: l.p50_ms,
            p99_ms: l.p99_ms,
            max_ms: l.max_ms,
        }
    }
}

/// The tables, shaped like faseng's `deployments` (columns, keys, unique
/// constraints) and `deployment_logs`, without faseng's trigger, outbox and
/// partial indexes: what a plain insert costs.
pub const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS deployments (
        id BIGSERIAL PRIMARY KEY,
        source_key TEXT NOT NULL UNIQUE,
        github_deployment_id BIGINT UNIQUE,
        state TEXT NOT NULL DEFAULT 'queued',
        requester TEXT NOT NULL,
        app TEXT NOT NULL,
        environment TEXT NOT NULL,
        repository TEXT NOT NULL,
        git_ref TEXT NOT NULL,
        sha TEXT,
        task TEXT NOT NULL,
        hosts TEXT,
        provider TEXT NOT NULL,
        payload JSONB NOT NULL DEFAULT '{}'::jsonb,
        notify TEXT[] NOT NULL DEFAULT '{}',
        timeout_secs BIGINT,
        created_at TIMESTAMPTZ NOT NULL DEFAULT now())",
    "CREATE TABLE IF NOT EXISTS deployment_logs (
        deployment_id BIGINT NOT NULL,
        seq BIGINT NOT NULL,
        stream TEXT NOT NULL,
        line TEXT NOT NULL,
        at TIMESTAMPTZ NOT NULL,
        PRIMARY KEY (deployment_id, seq))",
];

#[derive(Debug, Clone)]
pub struct Options {
    pub url: String,
    pub connections: u32,
    pub clone_url: String,
    pub sha: String,
}

struct Inserter {
    pool: PgPool,
    payload: Arc<serde_json::Value>,
    sha: Arc<String>,
    next_id: Arc<AtomicI64>,
}

/// The child's main.
pub async fn main(opts: Options) -> anyhow::Result<()> {
    let mut conn = sqlx::PgConnection::connect(&opts.url)
        .await
        .context("baseline: cannot connect")?;
    conn.execute("SELECT 1").await?;
    println!("ready");
    let mut stdin = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut inserter: Option<Inserter> = None;
    while let Some(line) = stdin.next_line().await? {
        let words: Vec<&str> = line.split_whitespace().collect();
        let arg = |i: usize| -> anyhow::Result<f64> {
            words
                .get(i)
                .context("missing argument")?
                .parse::<f64>()
                .context("bad argument")
        };
        if words.first() == Some(&"quit") {
            let m = Measured {
                peak_mb: crate::util::memory(std::process::id())?.peak_mb,
                ..Measured::default()
            };
            println!("{}", serde_json::to_string(&m)?);
            break;
        }
        let ins = match &mut inserter {
            Some(i) => i,
            None => {
                for ddl in SCHEMA {
                    conn.execute(*ddl).await?;
                }
                let pool = PgPoolOptions::new()
                    .max_connections(opts.connections)
                    .min_connections(opts.connections)
                    .connect(&opts.url)
                    .await?;
                let mut payload = fixture::payload(&opts.clone_url, Script::Noop);
                payload["_faseng"] =
                    serde_json::json!({"clone_url": opts.clone_url, "delivery": "bench-0"});
                inserter.insert(Inserter {
                    pool,
                    payload: Arc::new(payload),
                    sha: Arc::new(opts.sha.clone()),
                    next_id: Arc::new(AtomicI64::new(1)),
                })
            }
        };
        let m = match words.first().copied() {
            Some("burst") => ins.burst(arg(1)? as usize, arg(2)? as usize).await?,
            Some("paced") => ins.paced(arg(1)?, arg(2)?).await?,
            Some("single") => ins.single(arg(1)? as usize).await?,
            Some("logs") => ins.logs(arg(1)? as i64).await?,
            other => bail!("baseline: unknown command {other:?}"),
        };
        println!("{}", serde_json::to_string(&m)?);
    }
    if let Some(i) = inserter {
        i.pool.close().await;
    }
    Ok(())
}

impl Inserter {
    /// `n` rows from `concurrency` tasks sharing the pool.
    async fn burst(&self, n: usize, concurrency: usize) -> anyhow::Result<Measured> {
        let first = self.next_id.fetch_add(n as i64, Ordering::Relaxed);
        let next = Arc::new(AtomicI64::new(first));
        let end = first + n as i64;
        let t0 = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..concurrency.max(1) {
            let (pool, next, payload, sha) = (
                self.pool.clone(),
                next.clone(),
                self.payload.clone(),
                self.sha.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let mut lat = Vec::new();
                loop {
                    let id = next.fetch_add(1, Ordering::Relaxed);
                    if id >= end {
                        break;
                    }
                    let t = Instant::now();
                    insert(&pool, id, &payload, &sha).await?;
                    lat.push(t.elapsed());
                }
                anyhow::Ok(lat)
            }));
        }
        let mut lat = Vec::new();
        for t in tasks {
            lat.extend(t.await??);
        }
        Ok(Measured {
            rate: n as f64 / t0.elapsed().as_secs_f64(),
            latency: Latency::of(&lat).into(),
            peak_mb: 0.0,
        })
    }

    /// Open loop: each insert starts at its time; latency counts from then.
    async fn paced(&self, rate: f64, secs: f64) -> anyhow::Result<Measured> {
        let total = (rate * secs).round() as usize;
        let first = self.next_id.fetch_add(total as i64, Ordering::Relaxed);
        let start = Instant::now() + Duration::from_millis(20);
        let mut tasks = Vec::new();
        for k in 0..total {
            let at = start + Duration::from_secs_f64(k as f64 / rate);
            let (pool, payload, sha) = (self.pool.clone(), self.payload.clone(), self.sha.clone());
            tasks.push(tokio::spawn(async move {
                tokio::time::sleep_until(at).await;
                insert(&pool, first + k as i64, &payload, &sha).await?;
                anyhow::Ok(at.elapsed())
            }));
        }
        let mut lat = Vec::new();
        for t in tasks {
            lat.push(t.await??);
        }
        Ok(Measured {
            rate: total as f64 / start.elapsed().as_secs_f64(),
            latency: Latency::of(&lat).into(),
            peak_mb: 0.0,
        })
    }

    /// One at a time, nothing else running: what storing one row costs.
    async fn single(&self, n: usize) -> anyhow::Result<Measured> {
        let mut lat = Vec::new();
        for _ in 0..n {
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            let t0 = Instant::now();
            insert(&self.pool, id, &self.payload, &self.sha).await?;
            lat.push(t0.elapsed());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(Measured {
            rate: 0.0,
            latency: Latency::of(&lat).into(),
            peak_mb: 0.0,
        })
    }

    /// Log rows in batches of 2,000, as faseng's log writer sends them.
    async fn logs(&self, n: i64) -> anyhow::Result<Measured> {
        let deployment = self.next_id.fetch_add(1, Ordering::Relaxed);
        let t0 = Instant::now();
        let mut seq = 0i64;
        while seq < n {
            let upto = (seq + 2000).min(n);
            let lines: Vec<String> = (seq + 1..=upto).map(|k| k.to_string()).collect();
            let streams: Vec<&str> = vec!["stdout"; lines.len()];
            let ats = vec![chrono::Utc::now(); lines.len()];
            sqlx::query(
                "INSERT INTO deployment_logs (deployment_id, seq, stream, line, at) \
                 SELECT $5, $1 + u.ord, u.stream, u.line, u.at \
                 FROM UNNEST($2::text[], $3::text[], $4::timestamptz[]) \
                      WITH ORDINALITY AS u (stream, line, at, ord)",
            )
            .bind(seq)
            .bind(&streams)
            .bind(&lines)
            .bind(&ats)
            .bind(deployment)
            .execute(&self.pool)
            .await?;
            seq = upto;
        }
        Ok(Measured {
            rate: n as f64 / t0.elapsed().as_secs_f64(),
            latency: LatencyRecord::default(),
            peak_mb: 0.0,
        })
    }
}

/// The row faseng stores for GitHub deployment `github_id`, plainly inserted.
async fn insert(
    pool: &PgPool,
    github_id: i64,
    payload: &serde_json::Value,
    sha: &str,
) -> anyhow::Result<()> {
    let env = format!("env-{}", github_id % 500);
    let _: i64 = sqlx::query_scalar(
        "INSERT INTO deployments (source_key, github_deployment_id, requester, app, environment, \
         repository, git_ref, sha, task, hosts, provider, payload, notify) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) RETURNING id",
    )
    .bind(format!("github:{github_id}"))
    .bind(github_id)
    .bind("bench")
    .bind(fixture::APP)
    .bind(env)
    .bind(fixture::REPO)
    .bind("main")
    .bind(sha)
    .bind("deploy")
    .bind(None::<String>)
    .bind("shell")
    .bind(payload)
    .bind(vec!["github".to_string()])
    .fetch_one(pool)
    .await?;
    Ok(())
}
