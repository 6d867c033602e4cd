//! faseng's phases: ingest bursts against the baseline, pickup, logs, and the
//! whole service (a burst while the workers deploy, then the paced run).
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use chima_testkit::github::FakeGitHub;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use tokio::time::Instant;

use crate::fixture::{self, Repo};
use crate::util::{self, CpuMark, FasengCmd, Http, Memory};

use super::*;

/// The environments of the web tier's warm-up burst.
pub(super) const WARM_UP_PREFIX: &str = "webwarm-";

#[allow(clippy::too_many_arguments)]
pub(super) async fn faseng_phases(
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
        extra_env: opts.faseng_env.clone(),
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

    if opts.only_full {
        // The tables are analyzed after the burst (`full`), not empty.
        faseng.stop(Duration::from_secs(30)).await;
    } else {
        pickup_and_web_tier(
            faseng, opts, dbs, &mut cmd, &log, repo, http, &hook, &pool, ids, base, d,
        )
        .await
        .map_err(fail)?;
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
        if !opts.only_full {
            d.baseline_logs = base.cmd(&format!("logs {}", opts.log_lines)).await?;
            say(&format!("baseline: {:.0} log rows/s", d.baseline_logs.rate));
            logs(repo, http, &hook, &pool, ids, d).await?;
        }
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

/// Before the whole service: pickup (idle workers, then on tmpfs) and the web
/// tier alone, in rounds, then the intake alone. Stops `faseng` after the pickup.
#[allow(clippy::too_many_arguments)]
async fn pickup_and_web_tier(
    faseng: util::Proc,
    opts: &Options,
    dbs: &Dbs,
    cmd: &mut FasengCmd,
    log: &Path,
    repo: &Repo,
    http: &Http,
    hook: &str,
    pool: &PgPool,
    ids: &mut impl Iterator<Item = i64>,
    base: &mut Baseline,
    d: &mut Details,
) -> anyhow::Result<()> {
    d.pickup = pickup(opts.pickup_samples, "pickup", repo, http, hook, pool, ids).await?;
    faseng.stop(Duration::from_secs(30)).await;
    // The checkout is most of the pickup, and on this machine's disk most of
    // the checkout is the file system: the same on tmpfs, for comparison.
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        let workdir = shm.join(format!("chima-bench-{}", std::process::id()));
        let mut tmpfs = cmd.clone();
        tmpfs.workdir = workdir.clone();
        let (p, _) = tmpfs.start(log, http).await?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let result = pickup(
            opts.pickup_samples.div_ceil(2),
            "pickup-tmpfs",
            repo,
            http,
            hook,
            pool,
            ids,
        )
        .await;
        p.stop(Duration::from_secs(30)).await;
        let _ = std::fs::remove_dir_all(&workdir);
        d.pickup_tmpfs = Some(result?);
    }

    // The web tier alone (`faseng serve --workers 0`), in rounds, each right
    // after its baseline; then the same without GitHub credentials (no status
    // sender): the intake alone.
    cmd.workers = 0;
    for intake_only in [false, true] {
        if intake_only {
            cmd.github = None;
        }
        let (web, _) = cmd.start(log, http).await?;
        warm_up(opts, repo, http, hook, ids, pool, d).await?;
        let rounds = if intake_only { 1 } else { opts.rounds.max(1) };
        let prefix = if intake_only { "webintake" } else { "web" };
        let result = async {
        let mut pairs = Vec::new();
        for round in 0..rounds {
            let m = Meter::start(pool, base.pid()?, &dbs.base_name, None).await?;
            let baseline = base.burst(opts).await?;
            let baseline_cpu = m.per_request(pool, opts.webhooks).await?;
            let m = Meter::start(pool, web.pid, &dbs.name, Some("faseng")).await?;
            let faseng =
                burst(opts, repo, http, hook, ids, &format!("{prefix}{round}-")).await?;
            let sent = if intake_only {
                None
            } else {
                statuses_sent(pool, Duration::from_secs(60)).await?
            };
            let faseng_cpu = m.per_request(pool, opts.webhooks).await?;
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
        let faseng = paced(opts, repo, http, hook, ids, &format!("{prefix}paced-")).await?;
        if !intake_only {
            statuses_sent(pool, Duration::from_secs(90)).await?;
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
        let (pairs, paced) = result?;
        if intake_only {
            d.intake_burst = pairs.into_iter().next().unwrap_or_default();
            d.intake_paced = paced;
        } else {
            d.web_bursts = pairs;
            d.web_paced = paced;
        }
    }
    Ok(())
}

/// A web tier's warm-up, not measured: one burst of the rounds' size, so
/// that the rounds measure a service that has been running (its pool's
/// connections open, its statements prepared) on tables of a running
/// installation's size, then [`analyze`]. See BENCHMARKS.md ("Fresh tables").
async fn warm_up(
    opts: &Options,
    repo: &Repo,
    http: &Http,
    hook: &str,
    ids: &mut impl Iterator<Item = i64>,
    pool: &PgPool,
    d: &mut Details,
) -> anyhow::Result<()> {
    let warm = burst(opts, repo, http, hook, ids, WARM_UP_PREFIX).await?;
    if warm.accepted() != opts.webhooks {
        bail!(
            "the warm-up burst had answers other than 201: {:?}",
            warm.statuses
        );
    }
    analyze(opts, pool, d).await
}

/// Statistics for the planner, unless `--no-analyze`. A running installation's
/// tables have them (autovacuum keeps them); a fresh scratch database has none
/// until autovacuum first visits it, and statistics taken of a few rows make
/// the planner scan whole tables once they hold thousands (the queue's and
/// the outbox's look-ups by id). See BENCHMARKS.md ("Fresh tables").
async fn analyze(opts: &Options, pool: &PgPool, d: &mut Details) -> anyhow::Result<()> {
    if !opts.no_analyze {
        sqlx::query("ANALYZE").execute(pool).await?;
        d.analyzed_after_warmup = true;
    }
    Ok(())
}

/// The whole service: a burst while the workers deploy, the time until every
/// deployment has ended and every status is sent, then the paced run.
#[allow(clippy::too_many_arguments)]
pub(super) async fn full(
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
    let own_mark = util::cpu_secs(pid);
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
    d.e2e_cpu_own_us = (util::cpu_secs(pid) - own_mark) * per;
    say(&format!(
        "e2e: {} deployments in {:.1} s ({:.1}/s), {} succeeded; cpu per deployment: faseng with git and the provider {:.1} ms (faseng itself {:.1} ms), postgres {:.1} ms",
        opts.webhooks,
        d.e2e_secs,
        opts.webhooks as f64 / d.e2e_secs,
        d.e2e_succeeded,
        d.e2e_cpu.app_us / 1000.0,
        d.e2e_cpu_own_us / 1000.0,
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

    if opts.only_full {
        analyze(opts, pool, d).await?;
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
pub(super) async fn wait_done(
    pool: &PgPool,
    github_id: i64,
    limit: Duration,
) -> anyhow::Result<()> {
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
