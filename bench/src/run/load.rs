//! The loads sent to faseng: pickup with idle workers, closed-loop bursts,
//! open-loop paced runs, and one deployment printing many log lines.
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use sqlx::PgPool;
use tokio::time::Instant;

use crate::fixture::{self, Repo, Script};
use crate::util::{Delivery, Http, Latency};

use super::*;

/// Pickup with idle workers: one deployment at a time, each once the workers
/// have gone back to waiting; from the row being stored to the provider's
/// first instruction. The first deployment is not a sample: it is the first
/// of the repository on this faseng (a fresh work folder), which makes the
/// mirror; it is reported on its own.
#[allow(clippy::too_many_arguments)]
pub(super) async fn pickup(
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
    for n in 0..=samples {
        let id = ids.next().context("out of ids")?;
        let delivery = fixture::delivery(repo, id, env, Script::Mark);
        let (status, took) = delivery.send(http, hook).await;
        if status != 201 {
            bail!("pickup webhook answered {status}");
        }
        if n > 0 {
            acks.push(took);
        }
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
    let mut first_ms = f64::NAN;
    // The first stored is the one that made the mirror (one at a time: each was
    // stored after the one before had ended).
    let mut rows = rows;
    rows.sort_by(|a, b| a.1.total_cmp(&b.1));
    for (n, (id, created, started)) in rows.into_iter().enumerate() {
        let mark = *marks
            .get(&id)
            .with_context(|| format!("deployment {id} left no mark"))?;
        if n == 0 {
            first_ms = (mark - created) * 1000.0;
            continue;
        }
        total.push((mark - created) * 1000.0);
        claim.push((started - created) * 1000.0);
        rest.push((mark - started) * 1000.0);
    }
    let p = Pickup {
        total: Latency::of_ms(&mut total),
        claim: Latency::of_ms(&mut claim),
        checkout_to_start: Latency::of_ms(&mut rest),
        ack: Latency::of(&acks),
        first_ms,
    };
    say(&format!(
        "pickup: p50 {:.1} ms, p99 {:.1} ms (claim p50 {:.1} ms; checkout+start p50 {:.1} ms); first deployment (mirror made) {:.1} ms",
        p.total.p50_ms, p.total.p99_ms, p.claim.p50_ms, p.checkout_to_start.p50_ms, p.first_ms
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

pub(super) fn epoch(t: chrono::DateTime<chrono::Utc>) -> f64 {
    t.timestamp_micros() as f64 / 1e6
}

/// Open loop at `paced_rate` for `paced_secs`: each delivery leaves at its
/// time whatever the others do; latency counts from that time.
pub(super) async fn paced(
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
pub(super) async fn logs(
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
