//! The figures of BENCHMARKS.md made from the details: the headline table with
//! each faseng figure next to its baseline, and the diagnostics that explain it.

use crate::baseline::Measured;
use crate::report::{Better, Figures};
use crate::util::{Memory, median};

use super::*;

/// A figure from faseng/baseline pairs.
#[allow(clippy::too_many_arguments)]
pub(super) fn add_pairs<'a>(
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

pub(super) fn figures(opts: &Options, d: &Details) -> Figures {
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
pub(super) fn cpu_rows(f: &mut Figures, key: &str, title: &str, pairs: &[&Pair]) {
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
pub(super) fn diagnostics(opts: &Options, d: &Details) -> Figures {
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
    f.add(
        "pickup_first_ms",
        "pickup, the repository's first deployment on this faseng (its mirror made; not a sample above)",
        d.pickup.first_ms,
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
            "pickup, claimed -> provider started (checkout, guard, spawn)",
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
        "e2e_cpu_own_ms",
        "  of which faseng's own process (the rest: git, the guard, the provider) (ms)",
        d.e2e_cpu_own_us / 1000.0,
        "ms",
        Better::Lower,
        b.app_us / 1000.0,
        "per insert: baseline process",
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
    f.add(
        "chima_idle_rss_big_apps_mb",
        "chima idle RSS with faseng's app.json (every bench environment listed in each app)",
        d.chima_idle_big_apps.rss_mb,
        "MB",
        Better::Lower,
        d.baseline_idle.rss_mb,
        "baseline process idle",
    );
    f
}
