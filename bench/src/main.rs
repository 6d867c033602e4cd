//! chima-bench: the load tool behind `bench/run` and `bench/faults`.
//!
//! `run` starts the real faseng (and chima) release binaries, measures every
//! figure of BENCHMARKS.md and the plain-insert baseline in the same run, and
//! writes `bench/results/latest.json`. `pg-outage` and `notify-outage` are the
//! fault drills too long or too disruptive for the shared test suite.

mod baseline;
mod bigrepo;
mod faults;
mod fixture;
mod report;
mod run;
mod util;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "chima-bench", version, about, long_about = None)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

/// Where the release binaries are: next to this one, by default.
fn sibling(name: &str) -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join(name)))
        .unwrap_or_else(|| PathBuf::from(name))
}

/// `NAME=VALUE`, for `--faseng-env`.
fn env_pair(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("{text:?} is not NAME=VALUE")),
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Every figure, with the baseline, in one run.
    Run {
        /// Admin URL of the PostgreSQL server; scratch databases are made on it.
        #[arg(long, env = "DATABASE_URL")]
        database_url: String,
        /// The faseng binary (default: next to this one).
        #[arg(long)]
        faseng: Option<PathBuf>,
        /// The chima binary (default: next to this one).
        #[arg(long)]
        chima: Option<PathBuf>,
        /// Webhooks in the closed-loop ingest phase.
        #[arg(long, short = 'n', default_value_t = 5000)]
        webhooks: usize,
        /// Senders at once (and inserters at once for the baseline).
        #[arg(long, short = 'c', default_value_t = 64)]
        concurrency: usize,
        /// Environments the deployments are spread over.
        #[arg(long, default_value_t = 500)]
        environments: usize,
        /// FASENG_WORKERS.
        #[arg(long, default_value_t = 4)]
        workers: usize,
        /// Database connections of the baseline (faseng's pool holds 10).
        #[arg(long, default_value_t = 10)]
        baseline_connections: u32,
        /// Rate of the open-loop phase (webhooks per second).
        #[arg(long, default_value_t = 500.0)]
        paced_rate: f64,
        /// Length of the open-loop phase.
        #[arg(long, default_value_t = 10.0)]
        paced_secs: f64,
        /// Deployments in the pickup phase.
        #[arg(long, default_value_t = 100)]
        pickup_samples: usize,
        /// Lines printed by the log deployment.
        #[arg(long, default_value_t = 1_000_000)]
        log_lines: u64,
        /// Starts measured per binary (median reported).
        #[arg(long, default_value_t = 5)]
        starts: usize,
        /// Rounds of the web-tier burst, each after its own baseline burst
        /// (the figure is the median: with three, one round disturbed by the
        /// machine moves it neither way).
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// Where to write the JSON results.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Keep the temporary folder (logs of faseng and chima).
        #[arg(long)]
        keep: bool,
        /// Do not ANALYZE after the warm-up: run on a fresh database's
        /// planner statistics (see BENCHMARKS.md, "Fresh tables").
        #[arg(long)]
        no_analyze: bool,
        /// Skip the bigrepo phase (a large repository over HTTP).
        #[arg(long)]
        no_bigrepo: bool,
        /// Only the whole service's phase (the burst while the workers deploy, then
        /// the paced run) and what it needs: for working on those figures. The
        /// report of such a run lacks the other figures and is not a result.
        #[arg(long)]
        only_full: bool,
        /// Extra environment for every faseng the run starts, `NAME=VALUE`
        /// (repeatable): to compare a setting within one run's conditions.
        #[arg(long = "faseng-env", value_parser = env_pair)]
        faseng_env: Vec<(String, String)>,
        #[command(flatten)]
        bigrepo: BigrepoArgs,
    },
    /// The bigrepo phase alone: deploys of a large generated repository served
    /// over HTTP, through faseng and through git alone; merges its results
    /// into --out.
    Bigrepo {
        #[arg(long, env = "DATABASE_URL")]
        database_url: String,
        /// The faseng binary (default: next to this one).
        #[arg(long)]
        faseng: Option<PathBuf>,
        /// The JSON report to merge the results into (its other keys are kept).
        #[arg(long)]
        out: Option<PathBuf>,
        #[arg(long)]
        keep: bool,
        /// Only make sure the repository is generated (and cached); measure nothing.
        #[arg(long)]
        generate_only: bool,
        #[command(flatten)]
        bigrepo: BigrepoArgs,
    },
    /// The baseline inserter (started by `run`; not for direct use).
    #[command(hide = true)]
    Baseline {
        #[arg(long)]
        url: String,
        #[arg(long)]
        connections: u32,
        #[arg(long)]
        clone_url: String,
        #[arg(long)]
        sha: String,
    },
    /// Fault drill: PostgreSQL stopped for a while under load (a private
    /// PostgreSQL cluster, so that nothing else on the machine is disturbed).
    PgOutage {
        /// The faseng binary (default: next to this one).
        #[arg(long)]
        faseng: Option<PathBuf>,
        /// How long PostgreSQL stays down.
        #[arg(long, default_value_t = 10.0)]
        down_secs: f64,
        /// Webhooks per second sent throughout.
        #[arg(long, default_value_t = 50.0)]
        rate: f64,
        /// PostgreSQL's bin folder (initdb, pg_ctl); default: the newest installed.
        #[arg(long)]
        pg_bin: Option<PathBuf>,
        #[arg(long)]
        keep: bool,
    },
    /// Fault drill: the fake GitHub answers 5xx and then rate limits, and the
    /// fake Slack answers 429, for a while; every status and message must
    /// arrive afterwards, in order.
    NotifyOutage {
        /// The faseng binary (default: next to this one).
        #[arg(long)]
        faseng: Option<PathBuf>,
        #[arg(long, env = "DATABASE_URL")]
        database_url: String,
        /// Length of the outage (the first half 5xx, the second a rate limit).
        #[arg(long, default_value_t = 30.0)]
        outage_secs: f64,
        /// Deployments run during the outage.
        #[arg(long, default_value_t = 20)]
        deployments: usize,
        #[arg(long)]
        keep: bool,
    },
}

/// The bigrepo phase's knobs (the repository's shape and the samples).
#[derive(Debug, Clone, clap::Args)]
struct BigrepoArgs {
    /// Where generated repositories are kept between runs.
    #[arg(long, default_value = "bench/.cache")]
    bigrepo_cache: PathBuf,
    /// Files in HEAD of the generated repository.
    #[arg(long, default_value_t = bigrepo::Params::default().files)]
    bigrepo_files: usize,
    /// Commits of the generated repository.
    #[arg(long, default_value_t = bigrepo::Params::default().commits)]
    bigrepo_commits: usize,
    /// Rounds of redeploy / git worktree add.
    #[arg(long, default_value_t = 5)]
    bigrepo_rounds: usize,
    /// Deploys of commits newer than the first deploy's (at most 7).
    #[arg(long, default_value_t = 3)]
    bigrepo_new_commits: usize,
    /// FASENG_PROVIDER_NICE for faseng (default: faseng's own default).
    #[arg(long)]
    bigrepo_provider_nice: Option<u8>,
}

impl BigrepoArgs {
    fn options(&self, faseng: PathBuf, database_url: String, keep: bool) -> bigrepo::Options {
        let d = bigrepo::Params::default();
        bigrepo::Options {
            faseng,
            database_url,
            cache: self.bigrepo_cache.clone(),
            params: bigrepo::Params {
                files: self.bigrepo_files,
                commits: self.bigrepo_commits,
                initial_files: d.initial_files.min(self.bigrepo_files / 2),
                assets: d.assets.min(self.bigrepo_files / 10),
                ..d
            },
            rounds: self.bigrepo_rounds.max(1),
            new_commits: self.bigrepo_new_commits.min(7),
            provider_nice: self.bigrepo_provider_nice,
            keep,
        }
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("chima-bench: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let result = runtime.block_on(async move {
        match args.command {
            Command::Run {
                database_url,
                faseng,
                chima,
                webhooks,
                concurrency,
                environments,
                workers,
                baseline_connections,
                paced_rate,
                paced_secs,
                pickup_samples,
                log_lines,
                starts,
                rounds,
                out,
                keep,
                no_analyze,
                no_bigrepo,
                only_full,
                faseng_env,
                bigrepo,
            } => {
                let faseng = faseng.unwrap_or_else(|| sibling("faseng"));
                let bigrepo = (!no_bigrepo && !only_full)
                    .then(|| bigrepo.options(faseng.clone(), database_url.clone(), keep));
                run::main(run::Options {
                    faseng,
                    chima: chima.unwrap_or_else(|| sibling("chima")),
                    database_url,
                    webhooks,
                    concurrency: concurrency.max(1),
                    environments: environments.max(1),
                    workers,
                    baseline_connections: baseline_connections.max(1),
                    paced_rate,
                    paced_secs,
                    pickup_samples,
                    log_lines,
                    starts: starts.max(1),
                    rounds: rounds.max(1),
                    out,
                    keep,
                    no_analyze,
                    only_full,
                    faseng_env,
                    bigrepo,
                })
                .await
            }
            Command::Bigrepo {
                database_url,
                faseng,
                out,
                keep,
                generate_only,
                bigrepo,
            } => {
                let faseng = faseng.unwrap_or_else(|| sibling("faseng"));
                let opts = bigrepo.options(faseng, database_url, keep);
                if generate_only {
                    bigrepo::generate_only(&opts).await
                } else {
                    bigrepo::main(opts, out).await
                }
            }
            Command::Baseline {
                url,
                connections,
                clone_url,
                sha,
            } => {
                baseline::main(baseline::Options {
                    url,
                    connections,
                    clone_url,
                    sha,
                })
                .await
            }
            Command::PgOutage {
                faseng,
                down_secs,
                rate,
                pg_bin,
                keep,
            } => {
                faults::pg_outage(faults::PgOutage {
                    faseng: faseng.unwrap_or_else(|| sibling("faseng")),
                    down_secs,
                    rate,
                    pg_bin,
                    keep,
                })
                .await
            }
            Command::NotifyOutage {
                faseng,
                database_url,
                outage_secs,
                deployments,
                keep,
            } => {
                faults::notify_outage(faults::NotifyOutage {
                    faseng: faseng.unwrap_or_else(|| sibling("faseng")),
                    database_url,
                    outage_secs,
                    deployments,
                    keep,
                })
                .await
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chima-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}
