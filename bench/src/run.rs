//! `chima-bench run`: every figure of BENCHMARKS.md in one run, each next to
//! the plain-insert baseline measured in the same run, right before it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use chima_testkit::github::FakeGitHub;
use serde_json::{Value, json};
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};
use tokio::time::Instant;

use crate::baseline::Measured;
use crate::fixture::{self, Repo, Script};
use crate::report::{Better, Figures};
use crate::util::{
    self, CpuMark, Delivery, FasengCmd, Http, Latency, Memory, Proc, Scratch, median,
};

#[derive(Debug, Clone)]
pub struct Options {
    pub faseng: PathBuf,
    pub chima: PathBuf,
    pub database_url: String,
    pub webhooks: usize,
    pub concurrency: usize,
    pub environments: usize,
    pub workers: usize,
    pub baseline_connections: u32,
    pub paced_rate: f64,
    pub paced_secs: f64,
    pub pickup_samples: usize,
    pub log_lines: u64,
    pub starts: usize,
    pub rounds: usize,
    pub out: Option<PathBuf>,
    pub keep: bool,
    /// Skip the ANALYZE after the warm-up (shows the fresh-table plans).
    pub no_analyze: bool,
}

/// One closed-loop burst or one open-loop run of webhooks.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub(crate) struct Burst {
    pub statuses: HashMap<u16, usize>,
    pub secs: f64,
    pub latency: Latency,
}

impl Burst {
    pub fn accepted(&self) -> usize {
        self.statuses.get(&201).copied().unwrap_or(0)
    }

    pub fn rate(&self) -> f64 {
        self.accepted() as f64 / self.secs
    }
}

/// CPU used per request (webhook, or row for the baseline), in microseconds.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
struct Cpu {
    /// faseng's process (or the baseline's).
    app_us: f64,
    /// Its PostgreSQL backends.
    postgres_us: f64,
    /// This process: the load generator and the fake GitHub.
    bench_us: f64,
}

impl Cpu {
    fn total_us(&self) -> f64 {
        self.app_us + self.postgres_us
    }
}

/// A faseng measurement and the baseline measured right before it.
#[derive(Debug, Clone, Default, serde::Serialize)]
struct Pair {
    faseng: Burst,
    baseline: Measured,
    faseng_cpu: Cpu,
    baseline_cpu: Cpu,
    /// After the burst, until the GitHub status sender had sent every status.
    statuses_sent_secs: Option<f64>,
}

/// The PostgreSQL backends serving database `db` (those named `app`, if given).
async fn backends(pool: &PgPool, db: &str, app: Option<&str>) -> anyhow::Result<Vec<u32>> {
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
struct Meter {
    app: u32,
    db: String,
    app_name: Option<&'static str>,
    app_mark: CpuMark,
    pg_mark: CpuMark,
    bench_mark: CpuMark,
}

impl Meter {
    async fn start(
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

    async fn per_request(self, pool: &PgPool, requests: usize) -> anyhow::Result<Cpu> {
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
async fn statuses_sent(pool: &PgPool, limit: Duration) -> anyhow::Result<Option<f64>> {
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

/// Everything measured, beyond the headline figures.
#[derive(Default, serde::Serialize)]
struct Details {
    /// `faseng serve --workers 0`: the web tier alone, in rounds.
    web_bursts: Vec<Pair>,
    web_paced: Pair,
    /// The web tier without GitHub credentials: no status sender, the
    /// intake alone.
    intake_burst: Pair,
    intake_paced: Pair,
    /// CPU per deployment, end to end, of faseng with the git and provider
    /// processes it ran, and of its PostgreSQL backends.
    e2e_cpu: Cpu,
    /// `faseng serve` with its workers deploying what arrives.
    full_burst: Pair,
    full_paced: Pair,
    pickup: Pickup,
    /// The same with FASENG_WORKDIR on tmpfs (/dev/shm), when there is one.
    pickup_tmpfs: Option<Pickup>,
    baseline_single: Measured,
    analyzed_after_warmup: bool,
    e2e_secs: f64,
    e2e_succeeded: i64,
    /// From the first webhook of the burst until no GitHub status was left
    /// to send (None: not within the limit).
    statuses_drained_secs: Option<f64>,
    statuses_left: i64,
    paced_drain_secs: f64,
    log_lines_stored: i64,
    log_deploy_secs: f64,
    log_steady_lines_per_sec: f64,
    baseline_logs: Measured,
    faseng_first_start_ms: f64,
    faseng_start_ms: Vec<f64>,
    faseng_idle: Memory,
    faseng_after_load: Memory,
    chima_first_start_ms: f64,
    chima_start_ms: Vec<f64>,
    chima_version_ms: Vec<f64>,
    chima_idle: Memory,
    chima_after_deploys: Memory,
    baseline_start_ms: Vec<f64>,
    baseline_version_ms: Vec<f64>,
    baseline_idle: Memory,
    baseline_peak_mb: f64,
    load_average: Vec<String>,
}

pub async fn main(opts: Options) -> anyhow::Result<()> {
    let began = Instant::now();
    let started_at = chrono::Utc::now();
    let dir = std::env::temp_dir().join(format!("chima-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let result = measure(&opts, &dir).await;
    if !opts.keep {
        let _ = std::fs::remove_dir_all(&dir);
    } else {
        eprintln!("bench: files kept in {}", dir.display());
    }
    let (figures, details) = result?;
    let diagnostics = diagnostics(&opts, &details);

    let table = crate::report::table(&figures.list);
    println!("\n{table}");
    let diag_table = crate::report::table(&diagnostics.list);
    println!("What explains them:\n\n{diag_table}");
    let missed: Vec<&str> = figures
        .list
        .iter()
        .filter(|f| f.goal.as_ref().is_some_and(|g| !g.met))
        .map(|f| f.name.as_str())
        .collect();
    if missed.is_empty() {
        println!("every goal met");
    } else {
        println!("goals missed: {}", missed.join("; "));
    }
    let total = began.elapsed().as_secs_f64();
    println!(
        "bench: {total:.0} s in all; load average during the run: {}",
        details.load_average.join(" -> ")
    );
    if let Some(out) = &opts.out {
        let report = json!({
            "started_at": started_at.to_rfc3339(),
            "duration_secs": total,
            "machine": machine(&opts.database_url).await,
            "options": {
                "webhooks": opts.webhooks,
                "concurrency": opts.concurrency,
                "environments": opts.environments,
                "workers": opts.workers,
                "baseline_connections": opts.baseline_connections,
                "paced_rate": opts.paced_rate,
                "paced_secs": opts.paced_secs,
                "pickup_samples": opts.pickup_samples,
                "log_lines": opts.log_lines,
                "starts": opts.starts,
                "rounds": opts.rounds,
                "analyze_after_warmup": !opts.no_analyze,
                "database": redact(&opts.database_url),
            },
            "figures": figures.list,
            "diagnostics": diagnostics.list,
            "details": details,
            "table": table,
            "diagnostics_table": diag_table,
        });
        if let Some(parent) = out.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let tmp = out.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_string_pretty(&report)? + "\n")?;
        std::fs::rename(&tmp, out)?;
        println!("bench: wrote {}", out.display());
    }
    Ok(())
}

/// The URL without a password.
fn redact(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}{}", &url[..s + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

async fn machine(url: &str) -> Value {
    let pg = async {
        let pool = PgPoolOptions::new().max_connections(1).connect(url).await?;
        let v: String = sqlx::query_scalar("SELECT version()")
            .fetch_one(&pool)
            .await?;
        let sc: String = sqlx::query_scalar("SHOW synchronous_commit")
            .fetch_one(&pool)
            .await?;
        pool.close().await;
        anyhow::Ok((v, sc))
    }
    .await
    .unwrap_or_default();
    json!({
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "kernel": util::run("uname", &["-srm"], None).unwrap_or_default().trim(),
        "postgres": pg.0,
        "synchronous_commit": pg.1,
        "git": util::run("git", &["--version"], None).unwrap_or_default().trim(),
    })
}

fn say(what: &str) {
    eprintln!("bench: {what}");
}

/// The baseline process (`chima-bench baseline`), taking commands.
struct Baseline {
    child: Child,
    stdin: ChildStdin,
    out: Lines<BufReader<ChildStdout>>,
}

impl Baseline {
    async fn start(url: &str, opts: &Options, repo: &Repo) -> anyhow::Result<(Baseline, Duration)> {
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

    fn pid(&self) -> anyhow::Result<u32> {
        self.child.id().context("the baseline exited")
    }

    async fn cmd(&mut self, line: &str) -> anyhow::Result<Measured> {
        self.stdin.write_all(format!("{line}\n").as_bytes()).await?;
        self.stdin.flush().await?;
        let answer = tokio::time::timeout(Duration::from_secs(300), self.out.next_line())
            .await
            .with_context(|| format!("the baseline took over 5 minutes for `{line}`"))??
            .with_context(|| format!("the baseline died during `{line}`"))?;
        serde_json::from_str(&answer).with_context(|| format!("the baseline said {answer}"))
    }

    async fn burst(&mut self, opts: &Options) -> anyhow::Result<Measured> {
        let m = self
            .cmd(&format!("burst {} {}", opts.webhooks, opts.concurrency))
            .await?;
        say(&format!(
            "baseline: {:.0} inserts/s, p50 {:.1} ms, p99 {:.1} ms",
            m.rate, m.latency.p50_ms, m.latency.p99_ms
        ));
        Ok(m)
    }

    async fn paced(&mut self, opts: &Options) -> anyhow::Result<Measured> {
        let m = self
            .cmd(&format!("paced {} {}", opts.paced_rate, opts.paced_secs))
            .await?;
        say(&format!(
            "baseline: at {}/s, p50 {:.2} ms, p99 {:.2} ms",
            opts.paced_rate, m.latency.p50_ms, m.latency.p99_ms
        ));
        Ok(m)
    }

    async fn quit(mut self) -> anyhow::Result<f64> {
        let m = self.cmd("quit").await?;
        let _ = self.child.wait().await;
        Ok(m.peak_mb)
    }
}

async fn measure(opts: &Options, dir: &Path) -> anyhow::Result<(Figures, Details)> {
    let mut d = Details::default();
    d.load_average.push(load_average());
    let http = Http::new();
    let repo = fixture::repo(dir, opts.log_lines)?;
    // Every environment name the runs below generate (the web-tier rounds run no
    // workers, but their names are listed too, so that no deployment is refused).
    let mut prefixes = vec![
        "load-".to_string(),
        "webpaced-".to_string(),
        "webintakepaced-".to_string(),
        "paced-".to_string(),
    ];
    for round in 0..opts.rounds.max(1) {
        prefixes.push(format!("web{round}-"));
        prefixes.push(format!("webintake{round}-"));
    }
    let prefixes: Vec<&str> = prefixes.iter().map(String::as_str).collect();
    let apps = fixture::apps_json(
        dir,
        &repo,
        &fixture::environments(&prefixes, opts.environments.max(1)),
    )?;
    let gh = FakeGitHub::start().await;
    gh.add_repo(fixture::REPO, "main");
    let paced_total = (opts.paced_rate * opts.paced_secs).round() as usize;
    // Pickup (twice), the web rounds, the intake round and the full burst,
    // three paced runs, the log deployment.
    let needed =
        2 * opts.pickup_samples + (opts.rounds.max(1) + 2) * opts.webhooks + 3 * paced_total + 1;
    let ids: Vec<i64> = (0..needed)
        .map(|_| gh.seed_deployment(fixture::REPO, "main", "staging", "bench"))
        .collect();
    let mut ids = ids.into_iter();

    // ---- the baseline process ------------------------------------------------------
    let base_db = Scratch::create(
        &opts.database_url,
        &format!("chima_bench_base_{}", std::process::id()),
    )
    .await?;
    let me = std::env::current_exe()?;
    for _ in 0..opts.starts {
        let t0 = Instant::now();
        let status = tokio::process::Command::new(&me)
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .await?;
        d.baseline_version_ms
            .push(t0.elapsed().as_secs_f64() * 1000.0);
        if !status.success() {
            bail!("chima-bench --version failed");
        }
    }
    say("baseline: starts (exec -> connected), idle memory, single inserts");
    let mut kept = None;
    for k in 0..opts.starts {
        let (b, took) = Baseline::start(&base_db.url, opts, &repo).await?;
        d.baseline_start_ms.push(took.as_secs_f64() * 1000.0);
        if k + 1 < opts.starts {
            b.quit().await?;
        } else {
            kept = Some(b);
        }
    }
    let mut base = kept.context("no baseline")?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    d.baseline_idle = util::memory(base.pid()?)?;
    d.baseline_single = base.cmd("single 50").await?;

    // ---- faseng ----------------------------------------------------------------------
    let db = Scratch::create(
        &opts.database_url,
        &format!("chima_bench_{}", std::process::id()),
    )
    .await?;
    let dbs = Dbs {
        url: db.url.clone(),
        name: db.name.clone(),
        base_name: base_db.name.clone(),
    };
    let outcome = faseng_phases(
        opts, dir, &dbs, &apps, &repo, &gh, &http, &mut ids, &mut base, &mut d,
    )
    .await;
    db.drop_now().await;
    outcome?;
    d.baseline_peak_mb = base.quit().await?;
    base_db.drop_now().await;
    d.load_average.push(load_average());

    // ---- chima -----------------------------------------------------------------------
    chima_phases(opts, dir, &apps, &mut d).await?;
    d.load_average.push(load_average());

    Ok((figures(opts, &d), d))
}

/// faseng's database and the baseline's.
struct Dbs {
    url: String,
    name: String,
    base_name: String,
}

#[allow(clippy::too_many_arguments)]
async fn faseng_phases(
    opts: &Options,
    dir: &Path,
    dbs: &Dbs,
    apps: &Path,
    repo: &Repo,
    gh: &FakeGitHub,
    http: &Http,
    ids: &mut impl Iterator<Item = i64>,
    base: &mut Baseline,
    d: &mut Details,
) -> anyhow::Result<()> {
    let mut cmd = FasengCmd {
        binary: opts.faseng.clone(),
        database_url: dbs.url.clone(),
        apps: apps.to_path_buf(),
        port: util::free_port()?,
        workers: opts.workers,
        workdir: dir.join("work"),
        secret: fixture::SECRET.to_string(),
        github: Some((gh.url.clone(), gh.token())),
        extra_env: vec![],
    };
    let log = dir.join("faseng.log");
    say("faseng: first start (empty database: migrations), then restarts");
    let (p, took) = cmd.start(&log, http).await?;
    d.faseng_first_start_ms = took.as_secs_f64() * 1000.0;
    p.stop(Duration::from_secs(10)).await;
    let mut faseng = None;
    for k in 0..opts.starts {
        let (p, took) = cmd.start(&log, http).await?;
        d.faseng_start_ms.push(took.as_secs_f64() * 1000.0);
        if k + 1 < opts.starts {
            p.stop(Duration::from_secs(10)).await;
        } else {
            faseng = Some(p);
        }
    }
    let faseng = faseng.context("no faseng")?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    d.faseng_idle = faseng.memory()?;
    say(&format!("faseng: idle RSS {:.1} MB", d.faseng_idle.rss_mb));

    let pool = PgPoolOptions::new()
        .max_connections(2)
        .connect(&dbs.url)
        .await?;
    let hook = format!("{}/webhooks/github", cmd.url());
    let fail = |e: anyhow::Error| {
        anyhow::anyhow!("{e:#}\nfaseng's log ends with:\n{}", util::tail(&log, 30))
    };

    d.pickup = pickup(opts.pickup_samples, "pickup", repo, http, &hook, &pool, ids)
        .await
        .map_err(fail)?;
    faseng.stop(Duration::from_secs(30)).await;
    // The checkout is most of the pickup, and on this machine's disk most of
    // the checkout is the file system: the same on tmpfs, for comparison.
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        let workdir = shm.join(format!("chima-bench-{}", std::process::id()));
        let mut tmpfs = cmd.clone();
        tmpfs.workdir = workdir.clone();
        let (p, _) = tmpfs.start(&log, http).await?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let result = pickup(
            opts.pickup_samples.div_ceil(2),
            "pickup-tmpfs",
            repo,
            http,
            &hook,
            &pool,
            ids,
        )
        .await;
        p.stop(Duration::from_secs(30)).await;
        let _ = std::fs::remove_dir_all(&workdir);
        d.pickup_tmpfs = Some(result.map_err(fail)?);
    }
    if !opts.no_analyze {
        // A running installation's tables have statistics (autovacuum keeps
        // them); a fresh scratch database has none until autovacuum first
        // visits it. See BENCHMARKS.md ("Fresh tables") for what that does.
        sqlx::query("ANALYZE").execute(&pool).await?;
        d.analyzed_after_warmup = true;
    }

    // The web tier alone (`faseng serve --workers 0`), in rounds, each right
    // after its baseline; then the same without GitHub credentials (no status
    // sender): the intake alone.
    cmd.workers = 0;
    for intake_only in [false, true] {
        if intake_only {
            cmd.github = None;
        }
        let (web, _) = cmd.start(&log, http).await?;
        let rounds = if intake_only { 1 } else { opts.rounds.max(1) };
        let prefix = if intake_only { "webintake" } else { "web" };
        let result = async {
            let mut pairs = Vec::new();
            for round in 0..rounds {
                let m = Meter::start(&pool, base.pid()?, &dbs.base_name, None).await?;
                let baseline = base.burst(opts).await?;
                let baseline_cpu = m.per_request(&pool, opts.webhooks).await?;
                let m = Meter::start(&pool, web.pid, &dbs.name, Some("faseng")).await?;
                let faseng =
                    burst(opts, repo, http, &hook, ids, &format!("{prefix}{round}-")).await?;
                let sent = if intake_only {
                    None
                } else {
                    statuses_sent(&pool, Duration::from_secs(60)).await?
                };
                let faseng_cpu = m.per_request(&pool, opts.webhooks).await?;
                say(&format!(
                    "cpu per request: faseng {:.0} us + postgres {:.0} us; baseline {:.0} us + postgres {:.0} us",
                    faseng_cpu.app_us, faseng_cpu.postgres_us, baseline_cpu.app_us, baseline_cpu.postgres_us
                ));
                pairs.push(Pair {
                    faseng,
                    baseline,
                    faseng_cpu,
                    baseline_cpu,
                    statuses_sent_secs: sent,
                });
            }
            let baseline = base.paced(opts).await?;
            let faseng = paced(opts, repo, http, &hook, ids, &format!("{prefix}paced-")).await?;
            if !intake_only {
                statuses_sent(&pool, Duration::from_secs(90)).await?;
            }
            let paced = Pair {
                faseng,
                baseline,
                ..Pair::default()
            };
            anyhow::Ok((pairs, paced))
        }
        .await;
        web.stop(Duration::from_secs(30)).await;
        let (pairs, paced) = result.map_err(fail)?;
        if intake_only {
            d.intake_burst = pairs.into_iter().next().unwrap_or_default();
            d.intake_paced = paced;
        } else {
            d.web_bursts = pairs;
            d.web_paced = paced;
        }
    }
    cmd.github = Some((gh.url.clone(), gh.token()));
    // Those jobs are not run: they measured the intake only.
    sqlx::query("DELETE FROM deployments WHERE environment LIKE 'web%'")
        .execute(&pool)
        .await?;

    // The whole service: web and workers in one process.
    cmd.workers = opts.workers;
    let (faseng, _) = cmd.start(&log, http).await?;
    let result = async {
        full(
            opts,
            repo,
            http,
            &hook,
            &pool,
            ids,
            base,
            (faseng.pid, dbs),
            d,
        )
        .await?;
        d.baseline_logs = base.cmd(&format!("logs {}", opts.log_lines)).await?;
        say(&format!("baseline: {:.0} log rows/s", d.baseline_logs.rate));
        logs(repo, http, &hook, &pool, ids, d).await?;
        anyhow::Ok(())
    }
    .await;
    if let Err(e) = result {
        return Err(fail(e));
    }
    let peak = faseng.memory()?;
    tokio::time::sleep(Duration::from_secs(5)).await;
    d.faseng_after_load = Memory {
        peak_mb: peak.peak_mb,
        ..faseng.memory()?
    };
    say(&format!(
        "faseng: peak RSS {:.1} MB, {:.1} MB idle after the load",
        d.faseng_after_load.peak_mb, d.faseng_after_load.rss_mb
    ));
    pool.close().await;
    faseng.stop(Duration::from_secs(30)).await;
    Ok(())
}

/// The whole service: a burst while the workers deploy, the time until every
/// deployment has ended and every status is sent, then the paced run.
#[allow(clippy::too_many_arguments)]
async fn full(
    opts: &Options,
    repo: &Repo,
    http: &Http,
    hook: &str,
    pool: &PgPool,
    ids: &mut impl Iterator<Item = i64>,
    base: &mut Baseline,
    (pid, dbs): (u32, &Dbs),
    d: &mut Details,
) -> anyhow::Result<()> {
    let m = Meter::start(pool, base.pid()?, &dbs.base_name, None).await?;
    let baseline = base.burst(opts).await?;
    let baseline_cpu = m.per_request(pool, opts.webhooks).await?;
    let start_utc = chrono::Utc::now();
    let pg_mark = CpuMark::take(&backends(pool, &dbs.name, Some("faseng")).await?);
    let app_mark = util::cpu_secs_with_children(pid);
    let faseng = burst(opts, repo, http, hook, ids, "load-").await?;
    d.full_burst = Pair {
        faseng,
        baseline,
        baseline_cpu,
        ..Pair::default()
    };

    // End to end: until every deployment has ended.
    let limit = Duration::from_secs(420);
    let deadline = Instant::now() + limit;
    let mut last_report = Instant::now();
    loop {
        let (ended, succeeded, last): (i64, i64, Option<f64>) = sqlx::query_as(
            "SELECT count(*) FILTER (WHERE state NOT IN ('queued', 'running')), \
                    count(*) FILTER (WHERE state = 'succeeded'), \
                    extract(epoch FROM max(finished_at))::float8 \
             FROM deployments WHERE environment LIKE 'load-%'",
        )
        .fetch_one(pool)
        .await?;
        if ended as usize >= opts.webhooks {
            d.e2e_secs = last.unwrap_or_default() - epoch(start_utc);
            d.e2e_succeeded = succeeded;
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "after {limit:?} only {ended} of {} deployments had ended",
                opts.webhooks
            );
        }
        if last_report.elapsed() > Duration::from_secs(15) {
            say(&format!("e2e: {ended} of {} ended", opts.webhooks));
            last_report = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let per = 1e6 / opts.webhooks.max(1) as f64;
    d.e2e_cpu = Cpu {
        app_us: (util::cpu_secs_with_children(pid) - app_mark) * per,
        postgres_us: pg_mark.since(&backends(pool, &dbs.name, Some("faseng")).await?) * per,
        bench_us: 0.0,
    };
    say(&format!(
        "e2e: {} deployments in {:.1} s ({:.1}/s), {} succeeded; cpu per deployment: faseng with git and the provider {:.1} ms, postgres {:.1} ms",
        opts.webhooks,
        d.e2e_secs,
        opts.webhooks as f64 / d.e2e_secs,
        d.e2e_succeeded,
        d.e2e_cpu.app_us / 1000.0,
        d.e2e_cpu.postgres_us / 1000.0
    ));
    if d.e2e_succeeded as usize != opts.webhooks {
        let reasons: Vec<(String, i64)> = sqlx::query_as(
            "SELECT coalesce(reason, state), count(*) FROM deployments \
             WHERE environment LIKE 'load-%' AND state <> 'succeeded' GROUP BY 1 LIMIT 5",
        )
        .fetch_all(pool)
        .await?;
        bail!("not every deployment succeeded: {reasons:?}");
    }
    // Every GitHub status sent (reported, not required: see BENCHMARKS.md).
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let backlog: i64 =
            sqlx::query_scalar("SELECT count(*) FROM outbox WHERE delivered_at IS NULL")
                .fetch_one(pool)
                .await?;
        d.statuses_left = backlog;
        if backlog == 0 {
            d.statuses_drained_secs = Some((chrono::Utc::now() - start_utc).as_seconds_f64());
            say(&format!(
                "e2e: every GitHub status sent {:.1} s after the first webhook",
                d.statuses_drained_secs.unwrap_or_default()
            ));
            break;
        }
        if Instant::now() > deadline {
            say(&format!(
                "e2e: {backlog} GitHub statuses still unsent 2 minutes after the last deployment"
            ));
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let baseline = base.paced(opts).await?;
    let faseng = paced(opts, repo, http, hook, ids, "paced-").await?;
    d.full_paced = Pair {
        faseng,
        baseline,
        ..Pair::default()
    };
    // The paced run measured acknowledgements; the end-to-end rate was measured
    // above. Drop what is still queued (nobody waits for it) and let the
    // running ones end, so that the log phase runs alone.
    let t_start = Instant::now();
    sqlx::query("DELETE FROM deployments WHERE state = 'queued' AND environment LIKE 'paced-%'")
        .execute(pool)
        .await?;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let open: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM deployments WHERE state IN ('queued', 'running')",
        )
        .fetch_one(pool)
        .await?;
        if open == 0 {
            break;
        }
        if Instant::now() > deadline {
            bail!("{open} paced deployments still open");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    statuses_sent(pool, Duration::from_secs(60)).await?;
    d.paced_drain_secs = t_start.elapsed().as_secs_f64();
    Ok(())
}

/// Waits until the deployment of GitHub deployment `github_id` has ended.
async fn wait_done(pool: &PgPool, github_id: i64, limit: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        let state: Option<String> =
            sqlx::query_scalar("SELECT state FROM deployments WHERE github_deployment_id = $1")
                .bind(github_id)
                .fetch_optional(pool)
                .await?;
        if let Some(s) = &state
            && !matches!(s.as_str(), "queued" | "running")
        {
            if s != "succeeded" {
                bail!("GitHub deployment {github_id} ended {s}");
            }
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("GitHub deployment {github_id} still {state:?} after {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Pickup latencies: stored -> provider started, and its two parts.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
struct Pickup {
    total: Latency,
    /// Stored -> claimed by a worker.
    claim: Latency,
    /// Claimed -> the provider's first instruction (checkout, spawn).
    checkout_to_start: Latency,
    /// The webhooks' acknowledgements, one at a time.
    ack: Latency,
}

/// Pickup with idle workers: one deployment at a time, each once the workers
/// have gone back to waiting; from the row being stored to the provider's
/// first instruction.
#[allow(clippy::too_many_arguments)]
async fn pickup(
    samples: usize,
    env: &str,
    repo: &Repo,
    http: &Http,
    hook: &str,
    pool: &PgPool,
    ids: &mut impl Iterator<Item = i64>,
) -> anyhow::Result<Pickup> {
    say(&format!(
        "pickup: {samples} deployments one at a time, workers idle ({env})"
    ));
    let mut acks = Vec::new();
    for _ in 0..samples {
        let id = ids.next().context("out of ids")?;
        let delivery = fixture::delivery(repo, id, env, Script::Mark);
        let (status, took) = delivery.send(http, hook).await;
        if status != 201 {
            bail!("pickup webhook answered {status}");
        }
        acks.push(took);
        wait_done(pool, id, Duration::from_secs(60)).await?;
        // Let every worker go back to waiting for work.
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let marks: HashMap<i64, f64> = std::fs::read_to_string(&repo.marks)?
        .lines()
        .filter_map(|l| {
            let (id, at) = l.split_once(' ')?;
            Some((id.parse().ok()?, at.trim().parse().ok()?))
        })
        .collect();
    let rows: Vec<(i64, f64, f64)> = sqlx::query_as(
        "SELECT id, extract(epoch FROM created_at)::float8, extract(epoch FROM started_at)::float8 \
         FROM deployments WHERE environment = $1",
    )
    .bind(env)
    .fetch_all(pool)
    .await?;
    let (mut total, mut claim, mut rest) = (Vec::new(), Vec::new(), Vec::new());
    for (id, created, started) in rows {
        let mark = *marks
            .get(&id)
            .with_context(|| format!("deployment {id} left no mark"))?;
        total.push((mark - created) * 1000.0);
        claim.push((started - created) * 1000.0);
        rest.push((mark - started) * 1000.0);
    }
    let p = Pickup {
        total: Latency::of_ms(&mut total),
        claim: Latency::of_ms(&mut claim),
        checkout_to_start: Latency::of_ms(&mut rest),
        ack: Latency::of(&acks),
    };
    say(&format!(
        "pickup: p50 {:.1} ms, p99 {:.1} ms (claim p50 {:.1} ms; checkout+start p50 {:.1} ms)",
        p.total.p50_ms, p.total.p99_ms, p.claim.p50_ms, p.checkout_to_start.p50_ms
    ));
    Ok(p)
}

/// Closed loop: `webhooks` deliveries from `concurrency` senders, spread
/// over `environments` environments named `<prefix><n>`.
pub(crate) async fn burst(
    opts: &Options,
    repo: &Repo,
    http: &Http,
    hook: &str,
    ids: &mut impl Iterator<Item = i64>,
    prefix: &str,
) -> anyhow::Result<Burst> {
    say(&format!(
        "burst: {} webhooks, {} at a time, over {} environments ({prefix}*)",
        opts.webhooks, opts.concurrency, opts.environments
    ));
    let deliveries: Arc<Vec<Delivery>> = Arc::new(
        (0..opts.webhooks)
            .map(|i| {
                let id = ids.next().context("out of ids")?;
                let env = format!("{prefix}{}", i % opts.environments);
                Ok(fixture::delivery(repo, id, &env, Script::Noop))
            })
            .collect::<anyhow::Result<_>>()?,
    );
    let next = Arc::new(AtomicUsize::new(0));
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..opts.concurrency {
        let (deliveries, next, http, hook) = (
            deliveries.clone(),
            next.clone(),
            http.clone(),
            hook.to_string(),
        );
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(delivery) = deliveries.get(i) else {
                    break;
                };
                out.push(delivery.send(&http, &hook).await);
            }
            out
        }));
    }
    let mut b = Burst::default();
    let mut lat = Vec::new();
    for t in tasks {
        for (status, took) in t.await? {
            *b.statuses.entry(status).or_default() += 1;
            lat.push(took);
        }
    }
    b.secs = t0.elapsed().as_secs_f64();
    b.latency = Latency::of(&lat);
    say(&format!(
        "burst: {:.0} webhooks/s, ack p50 {:.1} ms, p99 {:.1} ms, statuses {:?}",
        b.accepted() as f64 / b.secs,
        b.latency.p50_ms,
        b.latency.p99_ms,
        b.statuses
    ));
    if b.accepted() != opts.webhooks {
        bail!(
            "only {} of {} webhooks were accepted",
            b.accepted(),
            opts.webhooks
        );
    }
    Ok(b)
}

fn epoch(t: chrono::DateTime<chrono::Utc>) -> f64 {
    t.timestamp_micros() as f64 / 1e6
}

/// Open loop at `paced_rate` for `paced_secs`: each delivery leaves at its
/// time whatever the others do; latency counts from that time.
async fn paced(
    opts: &Options,
    repo: &Repo,
    http: &Http,
    hook: &str,
    ids: &mut impl Iterator<Item = i64>,
    prefix: &str,
) -> anyhow::Result<Burst> {
    let total = (opts.paced_rate * opts.paced_secs).round() as usize;
    say(&format!(
        "paced: {total} webhooks at {}/s ({prefix}*)",
        opts.paced_rate
    ));
    let deliveries: Vec<Delivery> = (0..total)
        .map(|i| {
            let id = ids.next().context("out of ids")?;
            let env = format!("{prefix}{}", i % opts.environments);
            Ok(fixture::delivery(repo, id, &env, Script::Noop))
        })
        .collect::<anyhow::Result<_>>()?;
    let start = Instant::now() + Duration::from_millis(50);
    let mut tasks = Vec::new();
    for (k, delivery) in deliveries.into_iter().enumerate() {
        let at = start + Duration::from_secs_f64(k as f64 / opts.paced_rate);
        let (http, hook) = (http.clone(), hook.to_string());
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep_until(at).await;
            let (status, _) = delivery.send(&http, &hook).await;
            (status, at.elapsed())
        }));
    }
    let mut b = Burst::default();
    let mut lat = Vec::new();
    for t in tasks {
        let (status, took) = t.await?;
        *b.statuses.entry(status).or_default() += 1;
        lat.push(took);
    }
    b.secs = start.elapsed().as_secs_f64();
    b.latency = Latency::of(&lat);
    say(&format!(
        "paced: ack p50 {:.2} ms, p99 {:.2} ms, max {:.1} ms, statuses {:?}",
        b.latency.p50_ms, b.latency.p99_ms, b.latency.max_ms, b.statuses
    ));
    if b.accepted() != total {
        bail!("not every paced webhook was accepted");
    }
    Ok(b)
}

/// One deployment printing `log_lines` lines.
async fn logs(
    repo: &Repo,
    http: &Http,
    hook: &str,
    pool: &PgPool,
    ids: &mut impl Iterator<Item = i64>,
    d: &mut Details,
) -> anyhow::Result<()> {
    say("logs: one deployment printing the log lines");
    let id = ids.next().context("out of ids")?;
    let (status, _) = fixture::delivery(repo, id, "logs", Script::Lines)
        .send(http, hook)
        .await;
    if status != 201 {
        bail!("log webhook answered {status}");
    }
    let mut samples: Vec<(Instant, i64)> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(300);
    let (count, started, finished) = loop {
        let row: Option<(String, i64, Option<f64>, Option<f64>)> = sqlx::query_as(
            "SELECT state, log_seq, extract(epoch FROM started_at)::float8, \
                    extract(epoch FROM finished_at)::float8 \
             FROM deployments WHERE github_deployment_id = $1",
        )
        .bind(id)
        .fetch_optional(pool)
        .await?;
        if let Some((state, seq, started, finished)) = row {
            samples.push((Instant::now(), seq));
            if !matches!(state.as_str(), "queued" | "running") {
                if state != "succeeded" {
                    bail!("the log deployment ended {state}");
                }
                break (seq, started.unwrap_or(0.0), finished.unwrap_or(0.0));
            }
        }
        if Instant::now() > deadline {
            bail!("the log deployment did not end in 5 minutes");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    d.log_lines_stored = count;
    d.log_deploy_secs = finished - started;
    // The steady rate, between 1% and 99% of the lines.
    let at = |n: i64| samples.iter().find(|(_, s)| *s >= n).copied();
    if let (Some((ta, sa)), Some((tb, sb))) = (at(count / 100), at(count * 99 / 100))
        && tb > ta
    {
        d.log_steady_lines_per_sec = (sb - sa) as f64 / (tb - ta).as_secs_f64();
    }
    say(&format!(
        "logs: {count} lines in {:.2} s ({:.0} lines/s; steady {:.0} lines/s)",
        d.log_deploy_secs,
        count as f64 / d.log_deploy_secs,
        d.log_steady_lines_per_sec
    ));
    Ok(())
}

/// The output of a chima process, collected as it comes.
struct Output {
    text: Arc<Mutex<String>>,
    changed: Arc<tokio::sync::Notify>,
}

impl Output {
    fn follow(mut out: tokio::process::ChildStdout) -> Output {
        let text = Arc::new(Mutex::new(String::new()));
        let changed = Arc::new(tokio::sync::Notify::new());
        let (t, c) = (text.clone(), changed.clone());
        tokio::spawn(async move {
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                match out.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if let Ok(mut s) = t.lock() {
                            s.push_str(&String::from_utf8_lossy(&buf[..n]));
                        }
                        c.notify_waiters();
                    }
                }
            }
            c.notify_waiters();
        });
        Output { text, changed }
    }

    fn count(&self, what: &str) -> usize {
        self.text
            .lock()
            .map(|s| s.matches(what).count())
            .unwrap_or(0)
    }

    async fn wait_count(&self, what: &str, n: usize, limit: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            let notified = self.changed.notified();
            if self.count(what) >= n {
                return Ok(());
            }
            if Instant::now() > deadline {
                let text = self.text.lock().map(|s| s.clone()).unwrap_or_default();
                bail!(
                    "chima never printed {what:?} ({n} times); it printed:\n{}",
                    &text[text.len().saturating_sub(2000)..]
                );
            }
            let _ = tokio::time::timeout(Duration::from_millis(5), notified).await;
        }
    }
}

struct Chima {
    proc: Proc,
    stdin: tokio::process::ChildStdin,
    out: Output,
}

async fn start_chima(opts: &Options, dir: &Path, apps: &Path) -> anyhow::Result<(Chima, Duration)> {
    let log = dir.join("chima.log");
    let t0 = Instant::now();
    let mut child = tokio::process::Command::new(&opts.chima)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", std::env::var_os("HOME").unwrap_or_default())
        .env("USER", "bench")
        .env("APPS_JSON", apps)
        .env(
            "DATABASE_URL",
            format!("sqlite://{}", dir.join("chima.db").display()),
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log)?,
        ))
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start {}", opts.chima.display()))?;
    let pid = child.id().context("chima exited at once")?;
    let out = Output::follow(child.stdout.take().context("stdout")?);
    let stdin = child.stdin.take().context("stdin")?;
    out.wait_count("chima> ", 1, Duration::from_secs(60))
        .await?;
    let took = t0.elapsed();
    Ok((
        Chima {
            proc: Proc { child, pid, log },
            stdin,
            out,
        },
        took,
    ))
}

impl Chima {
    /// Ctrl-D: chima quits.
    async fn quit(self) {
        drop(self.stdin);
        let mut proc = self.proc;
        if tokio::time::timeout(Duration::from_secs(30), proc.child.wait())
            .await
            .is_err()
        {
            let _ = proc.child.start_kill();
        }
    }
}

async fn chima_phases(
    opts: &Options,
    dir: &Path,
    apps: &Path,
    d: &mut Details,
) -> anyhow::Result<()> {
    say("chima: --version, first start (new SQLite file), restarts, idle, deploys");
    for _ in 0..opts.starts.max(1) {
        let t0 = Instant::now();
        let status = tokio::process::Command::new(&opts.chima)
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .await?;
        d.chima_version_ms.push(t0.elapsed().as_secs_f64() * 1000.0);
        if !status.success() {
            bail!("chima --version failed");
        }
    }
    let (c, took) = start_chima(opts, dir, apps).await?;
    d.chima_first_start_ms = took.as_secs_f64() * 1000.0;
    c.quit().await;
    let mut kept = None;
    for k in 0..opts.starts.max(1) {
        let (c, took) = start_chima(opts, dir, apps).await?;
        d.chima_start_ms.push(took.as_secs_f64() * 1000.0);
        if k + 1 < opts.starts.max(1) {
            c.quit().await;
        } else {
            kept = Some(c);
        }
    }
    let mut c = kept.context("no chima")?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    d.chima_idle = c.proc.memory()?;
    say(&format!("chima: idle RSS {:.1} MB", d.chima_idle.rss_mb));
    for n in 1..=5 {
        c.stdin.write_all(b"deploy bench to staging\n").await?;
        c.stdin.flush().await?;
        c.out
            .wait_count("was successful", n, Duration::from_secs(60))
            .await
            .with_context(|| util::tail(&c.proc.log, 20))?;
    }
    d.chima_after_deploys = c.proc.memory()?;
    say(&format!(
        "chima: peak RSS {:.1} MB after 5 deploys",
        d.chima_after_deploys.peak_mb
    ));
    c.quit().await;
    Ok(())
}

/// A figure from faseng/baseline pairs.
#[allow(clippy::too_many_arguments)]
fn add_pairs<'a>(
    f: &'a mut Figures,
    key: &str,
    name: &str,
    pairs: &[&Pair],
    fv: fn(&Burst) -> f64,
    bv: fn(&Measured) -> f64,
    unit: &str,
    better: Better,
    baseline_name: &str,
) -> &'a mut crate::report::Figure {
    let values: Vec<f64> = pairs.iter().map(|p| fv(&p.faseng)).collect();
    let bases: Vec<f64> = pairs.iter().map(|p| bv(&p.baseline)).collect();
    f.add_rounds(key, name, &values, unit, better, &bases, baseline_name)
}

fn figures(opts: &Options, d: &Details) -> Figures {
    let mut f = Figures::default();
    let c = opts.concurrency;
    let rate = opts.paced_rate;
    let w = opts.workers;
    let web: Vec<&Pair> = d.web_bursts.iter().collect();
    let full = [&d.full_burst];
    let tiers: [(&str, String, &[&Pair], &Pair); 2] = [
        ("web", "web tier alone".to_string(), &web, &d.web_paced),
        (
            "full",
            format!("{w} workers deploying"),
            &full,
            &d.full_paced,
        ),
    ];
    for (key, tier, bursts, paced) in tiers {
        let fig = add_pairs(
            &mut f,
            &format!("{key}_webhooks_per_sec"),
            &format!("webhooks accepted per second, {c} at a time ({tier})"),
            bursts,
            Burst::rate,
            |m| m.rate,
            "/s",
            Better::Higher,
            "plain inserts/s",
        );
        if key == "web" {
            fig.ratio_at_least(0.5);
        }
        type Get = fn(&Burst) -> f64;
        type GetB = fn(&Measured) -> f64;
        let stats: [(&str, Get, GetB); 3] = [
            ("p50", |b| b.latency.p50_ms, |m| m.latency.p50_ms),
            ("p99", |b| b.latency.p99_ms, |m| m.latency.p99_ms),
            ("max", |b| b.latency.max_ms, |m| m.latency.max_ms),
        ];
        for (stat, fv, bv) in stats {
            add_pairs(
                &mut f,
                &format!("{key}_ack_{stat}_ms"),
                &format!("ack latency {stat}, {c} at a time ({tier})"),
                bursts,
                fv,
                bv,
                "ms",
                Better::Lower,
                &format!("insert {stat}"),
            );
        }
        for (stat, fv, bv) in stats {
            let fig = add_pairs(
                &mut f,
                &format!("{key}_paced_ack_{stat}_ms"),
                &format!("ack latency {stat} at {rate}/s ({tier})"),
                &[paced],
                fv,
                bv,
                "ms",
                Better::Lower,
                &format!("insert {stat} at {rate}/s"),
            );
            if stat == "p99" {
                fig.under(10.0);
            }
        }
    }
    let pickup = d.pickup.total;
    let single = &d.baseline_single.latency;
    f.add(
        "pickup_p50_ms",
        "pickup latency p50 (stored -> provider started, idle workers)",
        pickup.p50_ms,
        "ms",
        Better::Lower,
        single.p50_ms,
        "one insert p50",
    );
    f.add(
        "pickup_p99_ms",
        "pickup latency p99 (stored -> provider started, idle workers)",
        pickup.p99_ms,
        "ms",
        Better::Lower,
        single.p99_ms,
        "one insert p99",
    )
    .under(50.0);
    f.add(
        "e2e_per_sec",
        &format!("end-to-end deployments per second ({w} workers)"),
        opts.webhooks as f64 / d.e2e_secs,
        "/s",
        Better::Higher,
        d.full_burst.baseline.rate,
        "plain inserts/s",
    );
    f.add(
        "log_lines_per_sec",
        &format!(
            "log lines stored per second (one deploy, {} lines)",
            opts.log_lines
        ),
        d.log_lines_stored as f64 / d.log_deploy_secs,
        "/s",
        Better::Higher,
        d.baseline_logs.rate,
        "plain batch inserts/s",
    )
    .at_least(100_000.0);
    let base_idle = d.baseline_idle.rss_mb;
    f.add(
        "faseng_idle_rss_mb",
        "faseng idle RSS",
        d.faseng_idle.rss_mb,
        "MB",
        Better::Lower,
        base_idle,
        "baseline process idle",
    )
    .under(30.0);
    f.add(
        "faseng_peak_rss_mb",
        "faseng peak RSS (burst, paced, 1M-line log)",
        d.faseng_after_load.peak_mb,
        "MB",
        Better::Lower,
        d.baseline_peak_mb,
        "baseline process peak",
    );
    f.add(
        "chima_idle_rss_mb",
        "chima idle RSS (shell adapter at its prompt)",
        d.chima_idle.rss_mb,
        "MB",
        Better::Lower,
        base_idle,
        "baseline process idle",
    )
    .under(15.0);
    f.add(
        "chima_peak_rss_mb",
        "chima peak RSS (after 5 embedded deploys)",
        d.chima_after_deploys.peak_mb,
        "MB",
        Better::Lower,
        d.baseline_peak_mb,
        "baseline process peak",
    );
    let base_start = median(&d.baseline_start_ms);
    f.add(
        "faseng_cold_start_ms",
        "faseng cold start (exec -> /healthz 200, migrated db)",
        median(&d.faseng_start_ms),
        "ms",
        Better::Lower,
        base_start,
        "baseline exec -> connected",
    );
    f.add(
        "faseng_first_start_ms",
        "faseng first start (empty db, runs migrations)",
        d.faseng_first_start_ms,
        "ms",
        Better::Lower,
        base_start,
        "baseline exec -> connected",
    );
    f.add(
        "chima_cold_start_ms",
        "chima cold start (exec -> prompt, embedded engine)",
        median(&d.chima_start_ms),
        "ms",
        Better::Lower,
        base_start,
        "baseline exec -> connected",
    );
    f.add(
        "chima_version_ms",
        "chima --version",
        median(&d.chima_version_ms),
        "ms",
        Better::Lower,
        median(&d.baseline_version_ms),
        "chima-bench --version",
    );
    f
}

/// CPU per webhook of `pairs` (the median of their rounds), then its two
/// parts: the faseng process and its PostgreSQL backends.
fn cpu_rows(f: &mut Figures, key: &str, title: &str, pairs: &[&Pair]) {
    type Part = fn(&Cpu) -> f64;
    let rows: [(&str, String, Part, &str); 3] = [
        (
            "",
            format!("CPU per webhook, {title}"),
            Cpu::total_us,
            "per insert: baseline + backends",
        ),
        (
            "_app",
            "  of which the faseng process".to_string(),
            |c| c.app_us,
            "baseline process",
        ),
        (
            "_postgres",
            "  of which PostgreSQL".to_string(),
            |c| c.postgres_us,
            "baseline's backends",
        ),
    ];
    for (suffix, name, part, baseline_name) in rows {
        let values: Vec<f64> = pairs.iter().map(|p| part(&p.faseng_cpu)).collect();
        let bases: Vec<f64> = pairs.iter().map(|p| part(&p.baseline_cpu)).collect();
        f.add_rounds(
            &format!("{key}_cpu{suffix}_us"),
            &name,
            &values,
            "us",
            Better::Lower,
            &bases,
            baseline_name,
        );
    }
}

/// What explains the headline figures.
fn diagnostics(opts: &Options, d: &Details) -> Figures {
    let mut f = Figures::default();
    let c = opts.concurrency;
    let rate = opts.paced_rate;
    let web: Vec<&Pair> = d.web_bursts.iter().collect();
    cpu_rows(
        &mut f,
        "web",
        "web tier: faseng + its PostgreSQL backends (until every status is sent)",
        &web,
    );
    let sent: Vec<f64> = web.iter().filter_map(|p| p.statuses_sent_secs).collect();
    f.add(
        "web_statuses_sent_secs",
        &format!(
            "GitHub statuses of a {}-webhook burst all sent, after the burst ({} of {} rounds finished within 60 s)",
            opts.webhooks,
            sent.len(),
            web.len()
        ),
        median(&sent),
        "s",
        Better::Lower,
        0.0,
        "-",
    );
    let i = &d.intake_burst;
    cpu_rows(
        &mut f,
        "intake",
        "intake alone (no GitHub credentials: no status sender)",
        &[i],
    );
    f.add(
        "intake_webhooks_per_sec",
        &format!("webhooks accepted per second, {c} at a time (intake alone)"),
        i.faseng.rate(),
        "/s",
        Better::Higher,
        i.baseline.rate,
        "plain inserts/s",
    );
    f.add(
        "intake_ack_p99_ms",
        &format!("ack latency p99, {c} at a time (intake alone)"),
        i.faseng.latency.p99_ms,
        "ms",
        Better::Lower,
        i.baseline.latency.p99_ms,
        "insert p99",
    );
    let ip = &d.intake_paced;
    f.add(
        "intake_paced_ack_p99_ms",
        &format!("ack latency p99 at {rate}/s (intake alone)"),
        ip.faseng.latency.p99_ms,
        "ms",
        Better::Lower,
        ip.baseline.latency.p99_ms,
        &format!("insert p99 at {rate}/s"),
    );
    let single = &d.baseline_single.latency;
    f.add(
        "idle_ack_p50_ms",
        "ack latency p50, one webhook at a time",
        d.pickup.ack.p50_ms,
        "ms",
        Better::Lower,
        single.p50_ms,
        "one insert p50",
    );
    let mut parts = vec![
        (
            "pickup_claim",
            "pickup, stored -> claimed (LISTEN/NOTIFY, claim query)",
            d.pickup.claim,
        ),
        (
            "pickup_checkout",
            "pickup, claimed -> provider started (git clone + checkout, spawn)",
            d.pickup.checkout_to_start,
        ),
    ];
    if let Some(t) = &d.pickup_tmpfs {
        parts.push((
            "pickup_tmpfs",
            "pickup with FASENG_WORKDIR on tmpfs, stored -> provider started",
            t.total,
        ));
        parts.push((
            "pickup_tmpfs_checkout",
            "pickup with FASENG_WORKDIR on tmpfs, claimed -> provider started",
            t.checkout_to_start,
        ));
    }
    for (key, name, l) in parts {
        f.add(
            &format!("{key}_p50_ms"),
            &format!("{name} p50"),
            l.p50_ms,
            "ms",
            Better::Lower,
            single.p50_ms,
            "one insert p50",
        );
        f.add(
            &format!("{key}_p99_ms"),
            &format!("{name} p99"),
            l.p99_ms,
            "ms",
            Better::Lower,
            single.p99_ms,
            "one insert p99",
        );
    }
    let b = &d.full_burst.baseline_cpu;
    f.add(
        "e2e_cpu_ms",
        "CPU per deployment end to end: faseng, git, the provider (ms)",
        d.e2e_cpu.app_us / 1000.0,
        "ms",
        Better::Lower,
        b.total_us() / 1000.0,
        "per insert: baseline + backends",
    );
    f.add(
        "e2e_cpu_postgres_ms",
        "CPU per deployment end to end: PostgreSQL (ms)",
        d.e2e_cpu.postgres_us / 1000.0,
        "ms",
        Better::Lower,
        b.postgres_us / 1000.0,
        "per insert: baseline's backends",
    );
    f.add(
        "log_steady_lines_per_sec",
        "log lines stored per second, steady part (1% -> 99% of the lines)",
        d.log_steady_lines_per_sec,
        "/s",
        Better::Higher,
        d.baseline_logs.rate,
        "plain batch inserts/s",
    );
    let split: [(&str, &str, &Memory); 2] = [
        ("faseng", "faseng idle", &d.faseng_idle),
        ("chima", "chima idle", &d.chima_idle),
    ];
    for (key, name, m) in split {
        f.add(
            &format!("{key}_idle_anon_mb"),
            &format!("{name}: its own memory (RssAnon: heap, stacks)"),
            m.anon_mb,
            "MB",
            Better::Lower,
            d.baseline_idle.anon_mb,
            "baseline process",
        );
        f.add(
            &format!("{key}_idle_file_mb"),
            &format!("{name}: mapped file pages (RssFile: its code, shared)"),
            m.file_mb,
            "MB",
            Better::Lower,
            d.baseline_idle.file_mb,
            "baseline process",
        );
    }
    f.add(
        "faseng_rss_after_load_mb",
        "faseng RSS, idle again after the load",
        d.faseng_after_load.rss_mb,
        "MB",
        Better::Lower,
        d.baseline_idle.rss_mb,
        "baseline process idle",
    );
    f
}
