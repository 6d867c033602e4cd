//! Fault drills that do not belong in the shared test suite.
//!
//! * `pg-outage`: PostgreSQL stops for 10 s while webhooks keep coming. It runs
//!   on a private PostgreSQL cluster made for the drill (initdb on a free port),
//!   so other work on the machine's server is not disturbed.
//! * `notify-outage`: the fake GitHub answers 5xx and then rate limits, and the
//!   fake Slack answers 429, for 30 s (the test suite runs a 5 s version).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::bail;
use chima_testkit::github::{Endpoint, FakeGitHub, Reply};
use chima_testkit::pgcluster::Cluster;
use chima_testkit::slack::{self as fake_slack, Failure, FakeSlack};
use serde_json::json;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use tokio::time::Instant;

use crate::fixture::{self, Script};
use crate::util::{self, Delivery, FasengCmd, Http, Latency, Scratch};

pub struct PgOutage {
    pub faseng: PathBuf,
    pub down_secs: f64,
    pub rate: f64,
    pub pg_bin: Option<PathBuf>,
    pub keep: bool,
}

#[derive(Debug, Clone, Copy)]
struct Sent {
    github_id: i64,
    /// Seconds since the drill began, when it left.
    at: f64,
    status: u16,
    took: Duration,
}

pub async fn pg_outage(opts: PgOutage) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("chima-bench-pg-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let result = pg_outage_in(&opts, &dir).await;
    if opts.keep {
        eprintln!("bench: files kept in {}", dir.display());
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result
}

async fn pg_outage_in(opts: &PgOutage, dir: &Path) -> anyhow::Result<()> {
    let cluster = Cluster::create(dir, opts.pg_bin.clone()).map_err(anyhow::Error::msg)?;
    cluster.start().map_err(anyhow::Error::msg)?;
    let admin = cluster.url("postgres");
    let db = Scratch::create(&admin, "faseng_drill").await?;
    let repo = fixture::repo(dir, 10)?;
    let apps = fixture::apps_json(dir, &repo, &fixture::environments(&["env-"], 20))?;
    let gh = FakeGitHub::start().await;
    gh.add_repo(fixture::REPO, "main");
    let http = Http::new();
    let cmd = FasengCmd {
        binary: opts.faseng.clone(),
        database_url: db.url.clone(),
        apps,
        port: util::free_port()?,
        workers: 2,
        workdir: dir.join("work"),
        secret: fixture::SECRET.to_string(),
        github: Some((gh.url.clone(), gh.token())),
        extra_env: vec![],
    };
    let log = dir.join("faseng.log");
    let (faseng, _) = cmd.start(&log, &http).await?;
    let hook = format!("{}/webhooks/github", cmd.url());

    let before = 5.0;
    let after = 20.0;
    let total = before + opts.down_secs + after;
    let count = (opts.rate * total) as usize;
    let deliveries: Vec<Delivery> = (0..count)
        .map(|i| {
            let id = gh.seed_deployment(fixture::REPO, "main", "staging", "bench");
            fixture::delivery(&repo, id, &format!("env-{}", i % 20), Script::Noop)
        })
        .collect();
    eprintln!(
        "bench: {count} webhooks at {}/s for {total:.0} s; PostgreSQL stops at {before:.0} s for {:.0} s",
        opts.rate, opts.down_secs
    );
    let t0 = Instant::now();
    // /readyz, asked every 250 ms whether or not the last answer came:
    // (asked at, answered at, status).
    let ready: Arc<Mutex<Vec<(f64, f64, u16)>>> = Arc::default();
    let poller = {
        let (ready, http, url) = (ready.clone(), http.clone(), format!("{}/readyz", cmd.url()));
        tokio::spawn(async move {
            let mut asks = tokio::task::JoinSet::new();
            loop {
                let (ready, http, url) = (ready.clone(), http.clone(), url.clone());
                asks.spawn(async move {
                    let asked = t0.elapsed().as_secs_f64();
                    let status =
                        match tokio::time::timeout(Duration::from_secs(9), http.get(&url)).await {
                            Ok((s, _)) => s,
                            Err(_) => 0,
                        };
                    if let Ok(mut r) = ready.lock() {
                        r.push((asked, t0.elapsed().as_secs_f64(), status));
                    }
                });
                tokio::time::sleep(Duration::from_millis(250)).await;
                while asks.try_join_next().is_some() {}
            }
        })
    };
    let mut tasks = Vec::new();
    for (k, d) in deliveries.iter().cloned().enumerate() {
        let at = t0 + Duration::from_secs_f64(k as f64 / opts.rate);
        let (http, hook) = (http.clone(), hook.clone());
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep_until(at).await;
            let (status, took) =
                match tokio::time::timeout(Duration::from_secs(60), d.send(&http, &hook)).await {
                    Ok(r) => r,
                    Err(_) => (0, Duration::from_secs(60)),
                };
            Sent {
                github_id: d.github_id,
                at: (at - t0).as_secs_f64(),
                status,
                took,
            }
        }));
    }
    tokio::time::sleep_until(t0 + Duration::from_secs_f64(before)).await;
    let stop_at = t0.elapsed().as_secs_f64();
    cluster.stop().map_err(anyhow::Error::msg)?;
    let stopped_at = t0.elapsed().as_secs_f64();
    eprintln!(
        "bench: PostgreSQL stopped at {stop_at:.1} s (took {:.1} s)",
        stopped_at - stop_at
    );
    tokio::time::sleep_until(t0 + Duration::from_secs_f64(before + opts.down_secs)).await;
    let start_at = t0.elapsed().as_secs_f64();
    cluster.start().map_err(anyhow::Error::msg)?;
    let started_at = t0.elapsed().as_secs_f64();
    eprintln!("bench: PostgreSQL started again at {started_at:.1} s");
    let mut sent = Vec::new();
    for t in tasks {
        sent.push(t.await?);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    poller.abort();
    let ready = ready.lock().map(|r| r.clone()).unwrap_or_default();

    // What each phase got.
    let phase = |at: f64| {
        if at < stop_at {
            "before"
        } else if at < started_at {
            "down"
        } else {
            "after"
        }
    };
    let mut by_phase: BTreeMap<&str, BTreeMap<u16, usize>> = BTreeMap::new();
    let mut lat: HashMap<&str, Vec<Duration>> = HashMap::new();
    for s in &sent {
        *by_phase
            .entry(phase(s.at))
            .or_default()
            .entry(s.status)
            .or_default() += 1;
        lat.entry(phase(s.at)).or_default().push(s.took);
    }
    let mut ready_by_phase: BTreeMap<&str, BTreeMap<u16, usize>> = BTreeMap::new();
    for (asked, _, status) in &ready {
        *ready_by_phase
            .entry(phase(*asked))
            .or_default()
            .entry(*status)
            .or_default() += 1;
    }
    // Asked and answered while the database was down: must say so.
    let ready_while_down: Vec<u16> = ready
        .iter()
        .filter(|(asked, answered, _)| *asked >= stopped_at && *answered <= start_at)
        .map(|(_, _, s)| *s)
        .collect();
    let first_ok_after = sent
        .iter()
        .filter(|s| s.at >= start_at && (200..300).contains(&s.status))
        .map(|s| s.at)
        .fold(f64::INFINITY, f64::min);
    let ready_again = ready
        .iter()
        .filter(|(asked, _, s)| *asked >= start_at && *s == 200)
        .map(|(asked, _, _)| *asked)
        .fold(f64::INFINITY, f64::min);
    // GitHub gives up on a delivery after 10 s: an answer later than that is
    // a delivery GitHub shows as failed whatever faseng did with it.
    let too_slow = sent
        .iter()
        .filter(|s| s.took > Duration::from_secs(10))
        .count();
    let down_2xx = sent
        .iter()
        .filter(|s| phase(s.at) == "down" && (200..300).contains(&s.status))
        .count();

    // Every 2xx has its job.
    let pool = connect_retrying(&db.url).await?;
    let stored: Vec<i64> = sqlx::query_scalar(
        "SELECT github_deployment_id FROM deployments WHERE github_deployment_id IS NOT NULL",
    )
    .fetch_all(&pool)
    .await?;
    let stored: std::collections::HashSet<i64> = stored.into_iter().collect();
    let acked: Vec<&Sent> = sent
        .iter()
        .filter(|s| (200..300).contains(&s.status))
        .collect();
    let lost: Vec<i64> = acked
        .iter()
        .filter(|s| !stored.contains(&s.github_id))
        .map(|s| s.github_id)
        .collect();
    // GitHub redelivers what failed (an operator's "Redeliver", or the App's
    // retry): each must be stored now, once.
    let failed: Vec<&Delivery> = deliveries
        .iter()
        .filter(|d| {
            sent.iter()
                .any(|s| s.github_id == d.github_id && !(200..300).contains(&s.status))
        })
        .collect();
    let mut redelivered = BTreeMap::<u16, usize>::new();
    for d in &failed {
        let (status, _) = d.send(&http, &hook).await;
        *redelivered.entry(status).or_default() += 1;
    }
    let total_rows: i64 = sqlx::query_scalar("SELECT count(*) FROM deployments")
        .fetch_one(&pool)
        .await?;
    // Everything ends, and every status reaches GitHub.
    let deadline = Instant::now() + Duration::from_secs(180);
    let (open, backlog) = loop {
        let open: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM deployments WHERE state IN ('queued', 'running')",
        )
        .fetch_one(&pool)
        .await?;
        let backlog: i64 =
            sqlx::query_scalar("SELECT count(*) FROM outbox WHERE delivered_at IS NULL")
                .fetch_one(&pool)
                .await?;
        if (open == 0 && backlog == 0) || Instant::now() > deadline {
            break (open, backlog);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let states: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT state, coalesce(left(reason, 80), ''), count(*) FROM deployments GROUP BY 1, 2 ORDER BY 3 DESC",
    )
    .fetch_all(&pool)
    .await?;
    pool.close().await;
    faseng.stop(Duration::from_secs(30)).await;

    println!(
        "\nPostgreSQL outage drill ({:.0} s down, {}/s webhooks)",
        opts.down_secs, opts.rate
    );
    println!("  PostgreSQL stopped at {stop_at:.1} s, back at {started_at:.1} s");
    for (p, statuses) in &by_phase {
        let l = Latency::of(lat.get(p).map(Vec::as_slice).unwrap_or(&[]));
        println!(
            "  webhooks {p:>6}: {statuses:?} (answer p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms)",
            l.p50_ms, l.p99_ms, l.max_ms
        );
    }
    for (p, statuses) in &ready_by_phase {
        println!("  /readyz  {p:>6} (by when asked): {statuses:?}");
    }
    println!(
        "  first 2xx webhook {:.2} s after PostgreSQL was started; /readyz 200 again after {:.2} s",
        first_ok_after - start_at,
        ready_again - start_at
    );
    println!(
        "  {} webhooks got 2xx, {} of them without a job; {} redelivered after the outage: {redelivered:?}",
        acked.len(),
        lost.len(),
        failed.len()
    );
    println!(
        "  deployments stored: {total_rows} (one per GitHub deployment: {}); still open: {open}; statuses undelivered: {backlog}",
        count
    );
    for (state, reason, n) in &states {
        println!("  {n:>5} {state} {reason}");
    }
    println!(
        "  sent while it was down: {down_2xx} answered 2xx once PostgreSQL was back (each stored), the rest 503; \
         {too_slow} answers took over GitHub's 10 s"
    );
    println!("  /readyz asked and answered while it was down: {ready_while_down:?}");
    let mut problems = Vec::new();
    if !lost.is_empty() {
        problems.push(format!(
            "{} acknowledged webhooks have no job: {lost:?}",
            lost.len()
        ));
    }
    if by_phase
        .get("down")
        .is_none_or(|m| m.get(&503).copied().unwrap_or(0) == 0)
    {
        problems.push("no webhook got 503 while PostgreSQL was down".to_string());
    }
    if too_slow > 0 {
        problems.push(format!(
            "{too_slow} webhooks were answered after more than 10 s (GitHub's timeout)"
        ));
    }
    if ready_while_down.is_empty() || ready_while_down.iter().any(|s| *s != 503) {
        problems.push(format!(
            "/readyz did not answer 503 while PostgreSQL was down: {ready_while_down:?}"
        ));
    }
    if !first_ok_after.is_finite() || !ready_again.is_finite() {
        problems.push("faseng did not recover by itself".to_string());
    }
    if redelivered.keys().any(|s| !(200..300).contains(s)) {
        problems.push(format!("redeliveries failed: {redelivered:?}"));
    }
    if total_rows as usize != count {
        problems.push(format!(
            "{total_rows} deployments stored for {count} GitHub deployments"
        ));
    }
    if open > 0 || backlog > 0 {
        problems.push(format!(
            "{open} deployments still open, {backlog} statuses undelivered"
        ));
    }
    if problems.is_empty() {
        println!("  PASS");
        Ok(())
    } else {
        bail!(
            "the PostgreSQL outage drill failed:\n  {}\nfaseng's log ends with:\n{}",
            problems.join("\n  "),
            util::tail(&log, 30)
        )
    }
}

async fn connect_retrying(url: &str) -> anyhow::Result<PgPool> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match PgPoolOptions::new().max_connections(2).connect(url).await {
            Ok(p) => return Ok(p),
            Err(e) if Instant::now() > deadline => return Err(e.into()),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

pub struct NotifyOutage {
    pub faseng: PathBuf,
    pub database_url: String,
    pub outage_secs: f64,
    pub deployments: usize,
    pub keep: bool,
}

pub async fn notify_outage(opts: NotifyOutage) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("chima-bench-notify-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let db = Scratch::create(
        &opts.database_url,
        &format!("chima_bench_notify_{}", std::process::id()),
    )
    .await?;
    let result = notify_outage_in(&opts, &dir, &db.url).await;
    db.drop_now().await;
    if opts.keep {
        eprintln!("bench: files kept in {}", dir.display());
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result
}

async fn notify_outage_in(opts: &NotifyOutage, dir: &Path, db_url: &str) -> anyhow::Result<()> {
    let repo = fixture::repo(dir, 10)?;
    let apps = fixture::apps_json(dir, &repo, &fixture::environments(&["env-"], 20))?;
    let gh = FakeGitHub::start().await;
    gh.add_repo(fixture::REPO, "main");
    let slack = FakeSlack::start().await;
    let http = Http::new();
    let cmd = FasengCmd {
        binary: opts.faseng.clone(),
        database_url: db_url.to_string(),
        apps,
        port: util::free_port()?,
        workers: 4,
        workdir: dir.join("work"),
        secret: fixture::SECRET.to_string(),
        github: Some((gh.url.clone(), gh.token())),
        extra_env: vec![
            ("SLACK_BOT_TOKEN".into(), fake_slack::BOT_TOKEN.into()),
            ("SLACK_API_URL".into(), slack.url.clone()),
        ],
    };
    let log = dir.join("faseng.log");
    let (faseng, _) = cmd.start(&log, &http).await?;
    let hook = format!("{}/webhooks/github", cmd.url());

    let half = opts.outage_secs / 2.0;
    eprintln!(
        "bench: GitHub answers 502 for {half:.0} s, then rate limits for {half:.0} s; Slack answers 429 throughout; {} deployments meanwhile",
        opts.deployments
    );
    let t0 = Instant::now();
    gh.script(Endpoint::CreateStatus, Reply::Status(502), 1_000_000);
    for method in ["chat.postMessage", "chat.update"] {
        slack.fail_next(
            method,
            100_000,
            Failure::RateLimited {
                retry_after_secs: 2,
            },
        );
    }
    let mut ids = Vec::new();
    for i in 0..opts.deployments {
        let id = gh.seed_deployment(fixture::REPO, "main", "staging", "bench");
        let mut payload = fixture::payload(&repo.path.to_string_lossy(), Script::Noop);
        payload["notify"] = json!({"adapter": "slack", "room": "C0DEPLOYS", "user": "U0ALICE",
            "user_name": "alice", "thread_ts": format!("100.{i:03}")});
        let body = chima_testkit::github::deployment_event(
            fixture::REPO,
            &repo.path.to_string_lossy(),
            id,
            &repo.sha,
            "main",
            &format!("env-{}", i % 5),
            "deploy",
            payload,
        );
        let d = Delivery::new(
            id,
            format!("n-{id}"),
            fixture::SECRET.as_bytes(),
            body.to_string().into_bytes(),
        );
        let (status, _) = d.send(&http, &hook).await;
        if status != 201 {
            bail!("webhook answered {status}");
        }
        ids.push(id);
        // Spread over the first two thirds of the outage.
        let at = t0
            + Duration::from_secs_f64(
                opts.outage_secs * 2.0 / 3.0 * (i + 1) as f64 / opts.deployments as f64,
            );
        tokio::time::sleep_until(at).await;
    }
    tokio::time::sleep_until(t0 + Duration::from_secs_f64(half)).await;
    gh.clear_scripts();
    gh.script(
        Endpoint::CreateStatus,
        Reply::RateLimited { reset_in_secs: 5 },
        1_000_000,
    );
    tokio::time::sleep_until(t0 + Duration::from_secs_f64(opts.outage_secs)).await;
    gh.clear_scripts();
    slack.clear_failures();
    let ended = Instant::now();
    eprintln!("bench: outage over; waiting for every status and message");

    let want = ["queued", "in_progress", "success"];
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut github_done = None;
    let mut slack_done = None;
    loop {
        if github_done.is_none() && ids.iter().all(|id| gh.status_states(*id) == want) {
            github_done = Some(ended.elapsed());
        }
        if slack_done.is_none() && slack_all_successful(&slack, opts.deployments) {
            slack_done = Some(ended.elapsed());
        }
        if github_done.is_some() && slack_done.is_some() {
            break;
        }
        if Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    faseng.stop(Duration::from_secs(30)).await;
    let refused_gh = gh
        .requests_to("POST", "/repos/bench/app/deployments/")
        .len();
    let slack_calls = slack.calls("chat.postMessage").len() + slack.calls("chat.update").len();
    println!(
        "\nGitHub and Slack outage drill ({:.0} s)",
        opts.outage_secs
    );
    println!(
        "  {} deployments; {refused_gh} status posts tried in all; {slack_calls} Slack calls in all",
        ids.len()
    );
    let mut problems = Vec::new();
    match github_done {
        Some(t) => println!(
            "  every GitHub status delivered, in order, {:.1} s after the outage",
            t.as_secs_f64()
        ),
        None => {
            let bad: Vec<(i64, Vec<String>)> = ids
                .iter()
                .map(|id| (*id, gh.status_states(*id)))
                .filter(|(_, s)| s != &want)
                .collect();
            problems.push(format!("GitHub statuses missing or out of order: {bad:?}"));
        }
    }
    match slack_done {
        Some(t) => println!(
            "  every Slack message posted once and edited to its end {:.1} s after the outage",
            t.as_secs_f64()
        ),
        None => problems.push(format!(
            "Slack messages incomplete: {} posted, {} edits",
            slack.posted().len(),
            slack.updated().len()
        )),
    }
    if problems.is_empty() {
        println!("  PASS");
        Ok(())
    } else {
        bail!(
            "the notification outage drill failed:\n  {}\nfaseng's log ends with:\n{}",
            problems.join("\n  "),
            util::tail(&log, 30)
        )
    }
}

/// One message per deployment thread, whose latest text says it succeeded.
fn slack_all_successful(slack: &FakeSlack, deployments: usize) -> bool {
    let posted = slack.posted();
    let updated = slack.updated();
    if posted.len() != deployments {
        return false;
    }
    posted.iter().all(|p| {
        let last = updated
            .iter()
            .rev()
            .find(|u| u.ts == p.ts)
            .and_then(|u| u.text.clone())
            .or_else(|| p.text.clone())
            .unwrap_or_default();
        last.contains("was successful")
    })
}
