//! Small pieces the phases share: percentiles, memory of a process, an HTTP
//! client, child processes, databases.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;
use sqlx::Connection;
use tokio::time::Instant;

/// Percentiles of a set of latencies, in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Latency {
    pub count: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Latency {
    pub fn of(samples: &[Duration]) -> Latency {
        let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
        Latency::of_ms(&mut ms)
    }

    pub fn of_ms(ms: &mut [f64]) -> Latency {
        if ms.is_empty() {
            return Latency::default();
        }
        ms.sort_by(f64::total_cmp);
        Latency {
            count: ms.len(),
            p50_ms: percentile(ms, 50.0),
            p99_ms: percentile(ms, 99.0),
            max_ms: ms[ms.len() - 1],
        }
    }
}

/// Nearest-rank percentile of sorted values.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The median of some values (0 when there are none).
pub fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    percentile(&v, 50.0)
}

/// `VmRSS` and `VmHWM` of a process, in MB (10^6 bytes; the kernel counts KiB).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Memory {
    pub rss_mb: f64,
    pub peak_mb: f64,
    /// Of the RSS: the process's own memory (heap, stacks).
    pub anon_mb: f64,
    /// Of the RSS: pages of files mapped from the page cache (mostly the
    /// binary's code), shared and reclaimable.
    pub file_mb: f64,
}

pub fn memory(pid: u32) -> anyhow::Result<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("cannot read /proc/{pid}/status"))?;
    let field = |name: &str| -> f64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kb| kb.parse::<f64>().ok())
            .map(|kib| kib * 1024.0 / 1e6)
            .unwrap_or(0.0)
    };
    Ok(Memory {
        rss_mb: field("VmRSS:"),
        peak_mb: field("VmHWM:"),
        anon_mb: field("RssAnon:"),
        file_mb: field("RssFile:"),
    })
}

/// CPU seconds (user + system) a process has used; 0 when it is gone.
pub fn cpu_secs(pid: u32) -> f64 {
    proc_cpu(pid, false)
}

/// The same, plus what its children that it has waited for used (for faseng:
/// the git and provider processes of its deployments).
pub fn cpu_secs_with_children(pid: u32) -> f64 {
    proc_cpu(pid, true)
}

fn proc_cpu(pid: u32, children: bool) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // The fields after the command name, which may hold spaces: state is 3rd
    // overall, utime and stime the 14th and 15th.
    let Some(rest) = stat.rsplit(')').next() else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let own = ticks(11) + ticks(12);
    let waited = if children { ticks(13) + ticks(14) } else { 0.0 };
    (own + waited) / clock_ticks()
}

/// `getconf CLK_TCK` (100 on Linux, read once).
fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        run("getconf", &["CLK_TCK"], None)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// CPU used by some processes between two moments: the processes are named
/// at each moment (database backends come and go), and a process first seen
/// at the end counts from zero.
#[derive(Debug, Clone, Default)]
pub struct CpuMark {
    at: std::collections::HashMap<u32, f64>,
}

impl CpuMark {
    pub fn take(pids: &[u32]) -> CpuMark {
        CpuMark {
            at: pids.iter().map(|p| (*p, cpu_secs(*p))).collect(),
        }
    }

    /// CPU seconds used by `pids` since this mark.
    pub fn since(&self, pids: &[u32]) -> f64 {
        pids.iter()
            .map(|p| cpu_secs(*p) - self.at.get(p).copied().unwrap_or(0.0))
            .sum()
    }
}

/// A keep-alive HTTP/1 client.
#[derive(Clone)]
pub struct Http {
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Default for Http {
    fn default() -> Self {
        Http::new()
    }
}

impl Http {
    pub fn new() -> Http {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(1024)
            .build(connector);
        Http { client }
    }

    /// A request; the status (0 when unreachable) and the body.
    pub async fn send(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> (u16, Bytes) {
        let mut req = hyper::Request::builder().method(method).uri(url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let Ok(req) = req.body(Full::new(body)) else {
            return (0, Bytes::new());
        };
        match self.client.request(req).await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let body = resp
                    .into_body()
                    .collect()
                    .await
                    .map(|b| b.to_bytes())
                    .unwrap_or_default();
                (status, body)
            }
            Err(_) => (0, Bytes::new()),
        }
    }

    pub async fn get(&self, url: &str) -> (u16, Bytes) {
        self.send("GET", url, &[], Bytes::new()).await
    }
}

/// A signed `deployment` delivery, ready to send many times.
#[derive(Clone)]
pub struct Delivery {
    pub github_id: i64,
    pub delivery_id: String,
    pub signature: String,
    pub body: Bytes,
}

impl Delivery {
    pub fn new(github_id: i64, delivery_id: String, secret: &[u8], body: Vec<u8>) -> Delivery {
        let signature = chima_testkit::github::sign(secret, &body);
        Delivery {
            github_id,
            delivery_id,
            signature,
            body: Bytes::from(body),
        }
    }

    /// Sends it as GitHub does; the status (0: no answer) and how long the
    /// answer took.
    pub async fn send(&self, http: &Http, url: &str) -> (u16, Duration) {
        let t0 = Instant::now();
        let (status, _) = http
            .send(
                "POST",
                url,
                &[
                    ("content-type", "application/json"),
                    ("user-agent", "GitHub-Hookshot/bench"),
                    ("x-github-event", "deployment"),
                    ("x-github-delivery", &self.delivery_id),
                    ("x-hub-signature-256", &self.signature),
                ],
                self.body.clone(),
            )
            .await;
        (status, t0.elapsed())
    }
}

/// A child process that is killed when dropped.
pub struct Proc {
    pub child: tokio::process::Child,
    pub pid: u32,
    pub log: PathBuf,
}

impl Proc {
    pub fn memory(&self) -> anyhow::Result<Memory> {
        memory(self.pid)
    }

    /// SIGTERM, then wait up to `limit`; SIGKILL after that.
    pub async fn stop(mut self, limit: Duration) -> Option<i32> {
        signal(self.pid, "TERM");
        match tokio::time::timeout(limit, self.child.wait()).await {
            Ok(Ok(status)) => status.code(),
            _ => {
                let _ = self.child.start_kill();
                let _ = self.child.wait().await;
                None
            }
        }
    }
}

/// Sends a signal with kill(1): the bench has no unsafe code.
pub fn signal(pid: u32, sig: &str) {
    let _ = std::process::Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// How to start faseng.
#[derive(Debug, Clone)]
pub struct FasengCmd {
    pub binary: PathBuf,
    pub database_url: String,
    pub apps: PathBuf,
    pub port: u16,
    pub workers: usize,
    pub workdir: PathBuf,
    pub secret: String,
    pub github: Option<(String, String)>,
    pub extra_env: Vec<(String, String)>,
}

impl FasengCmd {
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Starts faseng and waits for `/healthz`; the process and how long that
    /// took from the exec.
    pub async fn start(&self, log: &Path, http: &Http) -> anyhow::Result<(Proc, Duration)> {
        let mut cmd = tokio::process::Command::new(&self.binary);
        cmd.arg("serve")
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", std::env::var_os("HOME").unwrap_or_default())
            .env("DATABASE_URL", &self.database_url)
            .env("APPS_JSON", &self.apps)
            .env("FASENG_LISTEN", format!("127.0.0.1:{}", self.port))
            .env("FASENG_WORKERS", self.workers.to_string())
            .env("FASENG_WORKDIR", &self.workdir)
            .env("FASENG_SHUTDOWN_GRACE", "5")
            .env("GITHUB_WEBHOOK_SECRET", &self.secret)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(log)
                    .with_context(|| format!("cannot open {}", log.display()))?,
            ))
            .kill_on_drop(true);
        if let Some((url, token)) = &self.github {
            cmd.env("GITHUB_API_URL", url).env("GITHUB_TOKEN", token);
        }
        for (k, v) in &self.extra_env {
            cmd.env(k, v);
        }
        let t0 = Instant::now();
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {}", self.binary.display()))?;
        let pid = child.id().context("faseng exited at once")?;
        let mut proc = Proc {
            child,
            pid,
            log: log.to_path_buf(),
        };
        let health = format!("{}/healthz", self.url());
        loop {
            if http.get(&health).await.0 == 200 {
                break;
            }
            if let Ok(Some(status)) = proc.child.try_wait() {
                bail!(
                    "faseng exited ({status}) before answering: {}",
                    tail(log, 20)
                );
            }
            if t0.elapsed() > Duration::from_secs(60) {
                bail!("faseng did not answer /healthz in 60 s: {}", tail(log, 20));
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        Ok((proc, t0.elapsed()))
    }
}

/// The last lines of a file.
pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A scratch database on the server of `admin_url`, dropped by [`Scratch::drop_now`].
pub struct Scratch {
    pub url: String,
    pub name: String,
    admin: String,
}

impl Scratch {
    pub async fn create(admin_url: &str, name: &str) -> anyhow::Result<Scratch> {
        let mut conn = sqlx::PgConnection::connect(admin_url)
            .await
            .with_context(|| format!("cannot connect to {admin_url}"))?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        )))
        .execute(&mut conn)
        .await?;
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .with_context(|| format!("cannot create database {name}"))?;
        Ok(Scratch {
            url: with_database(admin_url, name),
            admin: admin_url.to_string(),
            name: name.to_string(),
        })
    }

    pub async fn drop_now(self) {
        if let Ok(mut c) = sqlx::PgConnection::connect(&self.admin).await {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            )))
            .execute(&mut c)
            .await;
        }
    }
}

/// The URL of another database on the same server: the path is replaced,
/// the query (`?host=/var/run/postgresql` for a Unix socket) kept.
pub fn with_database(url: &str, name: &str) -> String {
    let (head, query) = match url.split_once('?') {
        Some((h, q)) => (h, Some(q)),
        None => (url, None),
    };
    let after_scheme = head.find("://").map(|i| i + 3).unwrap_or(0);
    let base = match head[after_scheme..].find('/') {
        Some(i) => &head[..after_scheme + i],
        None => head,
    };
    match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    }
}

/// Runs a program to completion; its stdout, or an error with its stderr.
pub fn run(program: &str, args: &[&str], dir: Option<&Path>) -> anyhow::Result<String> {
    let mut cmd = std::process::Command::new(program);
    cmd.args(args);
    if let Some(d) = dir {
        cmd.current_dir(d);
    }
    let out = cmd
        .output()
        .with_context(|| format!("cannot run {program}"))?;
    if !out.status.success() {
        bail!(
            "{program} {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 50.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&v, 100.0), 100.0);
        assert_eq!(percentile(&[7.0], 99.0), 7.0);
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        let l = Latency::of(&[Duration::from_millis(2), Duration::from_millis(4)]);
        assert_eq!((l.count, l.p50_ms, l.max_ms), (2, 2.0, 4.0));
    }

    #[test]
    fn database_urls_keep_their_socket() {
        assert_eq!(
            with_database("postgres://u@127.0.0.1:5432/postgres", "x"),
            "postgres://u@127.0.0.1:5432/x"
        );
        assert_eq!(
            with_database(
                "postgres://u@localhost/postgres?host=/var/run/postgresql",
                "x"
            ),
            "postgres://u@localhost/x?host=/var/run/postgresql"
        );
        assert_eq!(with_database("postgres://u@h:1", "x"), "postgres://u@h:1/x");
    }

    #[test]
    fn counts_its_own_cpu() {
        let me = std::process::id();
        let mark = CpuMark::take(&[me]);
        let t0 = std::time::Instant::now();
        let mut x = 0u64;
        while t0.elapsed() < Duration::from_millis(200) {
            x = x.wrapping_add(std::hint::black_box(1));
        }
        assert!(x > 0);
        let used = mark.since(&[me]);
        assert!(used > 0.05 && used < 5.0, "{used}");
    }

    #[test]
    fn reads_its_own_memory() {
        let m = memory(std::process::id()).unwrap();
        assert!(m.rss_mb > 0.0 && m.peak_mb >= m.rss_mb);
    }
}
