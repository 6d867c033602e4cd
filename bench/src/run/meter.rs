//! The instruments: CPU of a process and its PostgreSQL backends over a phase,
//! the wait for statuses to be sent, and the plain-insert baseline process.
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use sqlx::PgPool;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};
use tokio::time::Instant;

use crate::baseline::Measured;
use crate::fixture::Repo;
use crate::util::CpuMark;

use super::*;

/// The PostgreSQL backends serving database `db` (those named `app`, if given).
pub(super) async fn backends(
    pool: &PgPool,
    db: &str,
    app: Option<&str>,
) -> anyhow::Result<Vec<u32>> {
    let pids: Vec<i32> = sqlx::query_scalar(
        "SELECT pid FROM pg_stat_activity WHERE datname = $1 \
           AND ($2::text IS NULL OR application_name = $2) AND pid <> pg_backend_pid()",
    )
    .bind(db)
    .bind(app)
    .fetch_all(pool)
    .await?;
    Ok(pids.into_iter().map(|p| p as u32).collect())
}

/// Measures the CPU a process and its database backends use over a phase.
pub(super) struct Meter {
    app: u32,
    db: String,
    app_name: Option<&'static str>,
    app_mark: CpuMark,
    pg_mark: CpuMark,
    bench_mark: CpuMark,
}

impl Meter {
    pub(super) async fn start(
        pool: &PgPool,
        app: u32,
        db: &str,
        app_name: Option<&'static str>,
    ) -> anyhow::Result<Meter> {
        let pg = backends(pool, db, app_name).await?;
        Ok(Meter {
            app,
            db: db.to_string(),
            app_name,
            app_mark: CpuMark::take(&[app]),
            pg_mark: CpuMark::take(&pg),
            bench_mark: CpuMark::take(&[std::process::id()]),
        })
    }

    pub(super) async fn per_request(self, pool: &PgPool, requests: usize) -> anyhow::Result<Cpu> {
        let pg = backends(pool, &self.db, self.app_name).await?;
        let per = 1e6 / requests.max(1) as f64;
        Ok(Cpu {
            app_us: self.app_mark.since(&[self.app]) * per,
            postgres_us: self.pg_mark.since(&pg) * per,
            bench_us: self.bench_mark.since(&[std::process::id()]) * per,
        })
    }
}

/// Waits (up to `limit`) until no outbox event is left to send; how long.
pub(super) async fn statuses_sent(pool: &PgPool, limit: Duration) -> anyhow::Result<Option<f64>> {
    let t0 = Instant::now();
    loop {
        let backlog: i64 =
            sqlx::query_scalar("SELECT count(*) FROM outbox WHERE delivered_at IS NULL")
                .fetch_one(pool)
                .await?;
        if backlog == 0 {
            return Ok(Some(t0.elapsed().as_secs_f64()));
        }
        if t0.elapsed() > limit {
            say(&format!(
                "{backlog} GitHub statuses still unsent after {limit:?}"
            ));
            return Ok(None);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The baseline process (`chima-bench baseline`), taking commands.
pub(super) struct Baseline {
    child: Child,
    stdin: ChildStdin,
    out: Lines<BufReader<ChildStdout>>,
}

impl Baseline {
    pub(super) async fn start(
        url: &str,
        opts: &Options,
        repo: &Repo,
    ) -> anyhow::Result<(Baseline, Duration)> {
        let me = std::env::current_exe()?;
        let t0 = Instant::now();
        let mut child = tokio::process::Command::new(&me)
            .args([
                "baseline",
                "--url",
                url,
                "--connections",
                &opts.baseline_connections.to_string(),
                "--clone-url",
                &repo.path.to_string_lossy(),
                "--sha",
                &repo.sha,
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let mut out = BufReader::new(child.stdout.take().context("stdout")?).lines();
        match out.next_line().await? {
            Some(l) if l == "ready" => {}
            other => bail!("the baseline did not start: {other:?}"),
        }
        let took = t0.elapsed();
        let stdin = child.stdin.take().context("stdin")?;
        Ok((Baseline { child, stdin, out }, took))
    }

    pub(super) fn pid(&self) -> anyhow::Result<u32> {
        self.child.id().context("the baseline exited")
    }

    pub(super) async fn cmd(&mut self, line: &str) -> anyhow::Result<Measured> {
        self.stdin.write_all(format!("{line}\n").as_bytes()).await?;
        self.stdin.flush().await?;
        let answer = tokio::time::timeout(Duration::from_secs(300), self.out.next_line())
            .await
            .with_context(|| format!("the baseline took over 5 minutes for `{line}`"))??
            .with_context(|| format!("the baseline died during `{line}`"))?;
        serde_json::from_str(&answer).with_context(|| format!("the baseline said {answer}"))
    }

    pub(super) async fn burst(&mut self, opts: &Options) -> anyhow::Result<Measured> {
        let m = self
            .cmd(&format!("burst {} {}", opts.webhooks, opts.concurrency))
            .await?;
        say(&format!(
            "baseline: {:.0} inserts/s, p50 {:.1} ms, p99 {:.1} ms",
            m.rate, m.latency.p50_ms, m.latency.p99_ms
        ));
        Ok(m)
    }

    pub(super) async fn paced(&mut self, opts: &Options) -> anyhow::Result<Measured> {
        let m = self
            .cmd(&format!("paced {} {}", opts.paced_rate, opts.paced_secs))
            .await?;
        say(&format!(
            "baseline: at {}/s, p50 {:.2} ms, p99 {:.2} ms",
            opts.paced_rate, m.latency.p50_ms, m.latency.p99_ms
        ));
        Ok(m)
    }

    pub(super) async fn quit(mut self) -> anyhow::Result<f64> {
        let m = self.cmd("quit").await?;
        let _ = self.child.wait().await;
        Ok(m.peak_mb)
    }
}
