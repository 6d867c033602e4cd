//! `chima-bench run`: every figure of BENCHMARKS.md in one run, each next to
//! the plain-insert baseline measured in the same run, right before it.
//!
//! This module holds the options, what is measured (`Details`, `Pair`, ...), the
//! run's order and the machine's description; `meter` measures CPU and runs the
//! baseline process, `faseng` and `load` drive faseng, `chima` drives chima, and
//! `figures` turns the details into BENCHMARKS.md's tables.

mod chima;
mod faseng;
mod figures;
mod load;
mod meter;

use chima::*;
use faseng::*;
use figures::*;
use load::*;
use meter::*;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use chima_testkit::github::FakeGitHub;
use serde_json::{Value, json};
use sqlx::postgres::PgPoolOptions;
use tokio::time::Instant;

use crate::baseline::Measured;
use crate::fixture::{self};
use crate::report::Figures;
use crate::util::{self, Http, Latency, Memory, Scratch};

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
    /// Only the whole service's phase (`--only-full`).
    pub only_full: bool,
    /// Extra environment for faseng (`--faseng-env`).
    pub faseng_env: Vec<(String, String)>,
    /// The bigrepo phase, last (None: skipped).
    pub bigrepo: Option<crate::bigrepo::Options>,
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
    /// The phase's first deployment, not a sample: the first of its
    /// repository on this faseng, which makes the mirror (stored -> provider
    /// started, ms). bigrepo measures first deploys of a large repository.
    first_ms: f64,
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
    /// Of `e2e_cpu.app_us`, faseng's own process (the rest is the git, guard and
    /// provider processes it ran): what competes with the web tier at its priority.
    e2e_cpu_own_us: f64,
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
    /// chima idle with faseng's app.json (every bench environment listed).
    chima_idle_big_apps: Memory,
    chima_after_deploys: Memory,
    baseline_start_ms: Vec<f64>,
    baseline_version_ms: Vec<f64>,
    baseline_idle: Memory,
    baseline_peak_mb: f64,
    load_average: Vec<String>,
    /// The bigrepo phase (a large repository over HTTP), when it ran.
    bigrepo: Option<crate::bigrepo::Details>,
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
    let (mut figures, details) = result?;
    let mut diagnostics = diagnostics(&opts, &details);
    if let Some(b) = &details.bigrepo {
        let (f, g) = crate::bigrepo::figures(b);
        figures.list.extend(f.list);
        diagnostics.list.extend(g.list);
    }

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
                "only_full": opts.only_full,
                "faseng_env": opts.faseng_env.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>(),
                "database": redact(&opts.database_url),
            },
            "bigrepo_warm_start_ratio": details.bigrepo.as_ref().map(|b| b.warm_start_ratio),
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
        faseng::WARM_UP_PREFIX.to_string(),
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
    // Pickup (twice), the web tier's warm-up and rounds, the intake's warm-up
    // and round, the full burst, three paced runs, the log deployment.
    let needed =
        2 * opts.pickup_samples + (opts.rounds.max(1) + 4) * opts.webhooks + 3 * paced_total + 1;
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
    // chima gets an app.json of a chat bot's size: the bench's apps with two
    // environments each. faseng's lists every environment the bench deploys to
    // (4,005 per app by default, as faseng runs only what its app.json names), which
    // would make chima's idle figure a measure of that file; chima idle with it
    // is shown among the diagnostics.
    let chima_dir = dir.join("chima-apps");
    std::fs::create_dir_all(&chima_dir)?;
    let chima_apps = fixture::apps_json(
        &chima_dir,
        &repo,
        &["staging".to_string(), "production".to_string()],
    )?;
    if !opts.only_full {
        chima_phases(opts, dir, &chima_apps, &apps, &mut d).await?;
    }
    d.load_average.push(load_average());

    // ---- bigrepo ---------------------------------------------------------------------
    if let Some(b) = &opts.bigrepo {
        let sub = dir.join("bigrepo");
        std::fs::create_dir_all(&sub)?;
        d.bigrepo = Some(crate::bigrepo::measure(b, &sub).await?);
        d.load_average.push(load_average());
    }

    Ok((figures(opts, &d), d))
}

/// faseng's database and the baseline's.
struct Dbs {
    url: String,
    name: String,
    base_name: String,
}
