//! faseng's settings: every one an environment variable and a flag (`--help`).

use std::net::SocketAddr;
use std::path::PathBuf;

use chima_settings::{DeployArgs, GitHubArgs, SharedKeyArgs, SlackBotArgs};
use clap::{Parser, Subcommand};

use crate::manifest;

/// The deploy service behind chima: queues and runs deployments.
#[derive(Debug, Parser)]
#[command(name = "faseng", version, about, long_about = None)]
pub struct Args {
    /// Address for webhooks, the API and the log pages.
    #[arg(
        long,
        env = "FASENG_LISTEN",
        default_value = "127.0.0.1:8080",
        global = true
    )]
    pub listen: SocketAddr,

    /// The URL people and GitHub reach faseng at (for log links). Default:
    /// `http://<listen address>`.
    #[arg(long, env = "FASENG_PUBLIC_URL", global = true)]
    pub public_url: Option<String>,

    /// Deployments run at once by this process (0: web only).
    #[arg(long, env = "FASENG_WORKERS", default_value_t = 4, global = true)]
    pub workers: usize,

    /// Where per-job checkouts and the repository mirrors go. Default: the
    /// user's cache folder (`$XDG_CACHE_HOME/faseng/work`, else
    /// `~/.cache/faseng/work`), which outlives the process so that mirrors are
    /// kept between restarts.
    #[arg(long, env = "FASENG_WORKDIR", global = true)]
    pub workdir: Option<PathBuf>,

    /// The most the repository mirrors (in the work folder) may take together,
    /// in GB; beyond it, the least recently used mirrors no running deployment
    /// needs are removed after a fetch.
    #[arg(
        long,
        env = "FASENG_MIRROR_MAX_GB",
        default_value_t = chima_engine::DEFAULT_MIRROR_MAX_GB as f64,
        global = true
    )]
    pub mirror_max_gb: f64,

    /// Where repositories without `clone_url` are cloned from (`<base>/<owner>/<name>.git`).
    /// Default: the GitHub of GITHUB_API_URL (`https://github.com` for api.github.com, else
    /// its scheme, host and port). The GitHub token is only ever sent to that GitHub.
    #[arg(long, env = "FASENG_CLONE_BASE", global = true)]
    pub clone_base: Option<String>,

    /// Shared secret of the GitHub webhook (required to serve webhooks).
    #[arg(
        long,
        env = "GITHUB_WEBHOOK_SECRET",
        hide_env_values = true,
        global = true
    )]
    pub webhook_secret: Option<String>,

    /// The apps config, the job store and the claim's lease.
    #[command(flatten)]
    pub deploy: DeployArgs,

    /// faseng's API token (also the key of log links) and the key chima's requests
    /// are checked with.
    #[command(flatten)]
    pub keys: SharedKeyArgs,

    /// GitHub: statuses, clones of private repositories, the doctor's checks.
    #[command(flatten)]
    pub github: GitHubArgs,

    /// Slack: with a bot token, deployment messages go to Slack.
    #[command(flatten)]
    pub slack: SlackBotArgs,

    /// Heroku Platform API key, for `heroku` apps.
    #[arg(long, env = "HEROKU_API_KEY", hide_env_values = true, global = true)]
    pub heroku_api_key: Option<String>,

    /// Heroku Platform API base URL.
    #[arg(
        long,
        env = "HEROKU_API_URL",
        default_value = "https://api.heroku.com",
        global = true
    )]
    pub heroku_api_url: String,

    /// On SIGTERM, how long running deployments may finish (seconds) before
    /// they are cancelled.
    #[arg(
        long,
        env = "FASENG_SHUTDOWN_GRACE",
        default_value_t = 60,
        global = true
    )]
    pub shutdown_grace: u64,

    /// A bearer token `/metrics` requires (Prometheus' `authorization` setting).
    /// Without it `/metrics` is open, as it was.
    #[arg(
        long,
        env = "FASENG_METRICS_TOKEN",
        hide_env_values = true,
        global = true
    )]
    pub metrics_token: Option<String>,

    /// Live log streams open at once (each polls the store while open); beyond them
    /// a new one is answered 503 with `Retry-After`.
    #[arg(
        long,
        env = "FASENG_MAX_STREAMS",
        default_value_t = crate::web::bounds::DEFAULT_MAX_STREAMS,
        value_parser = clap::value_parser!(u32).range(1..),
        global = true
    )]
    pub max_streams: u32,

    /// Log pages, the index and API log fetches served at once; beyond them a new
    /// one is answered 503 with `Retry-After`.
    #[arg(
        long,
        env = "FASENG_MAX_PAGE_LOADS",
        default_value_t = crate::web::bounds::DEFAULT_MAX_PAGE_LOADS,
        value_parser = clap::value_parser!(u32).range(1..),
        global = true
    )]
    pub max_page_loads: u32,

    /// The niceness providers and git run at (0: faseng's own, to 19: the lowest), so
    /// that webhooks, chat answers and lease renewals stay quick while deploys run.
    #[arg(
        long,
        env = "FASENG_PROVIDER_NICE",
        default_value_t = 10,
        value_parser = chima_engine::priority::Priority::parse_nice,
        global = true
    )]
    pub provider_nice: u8,

    /// The niceness of the workers' own work (claims, lease renewals, a job's log and
    /// processes, the guards): between the web tier (faseng's own) and the providers,
    /// so that acknowledgements come first and renewals still come before any deploy.
    /// 0 keeps them at faseng's own; never below the providers (capped at
    /// `FASENG_PROVIDER_NICE`).
    #[arg(
        long,
        env = "FASENG_WORKER_NICE",
        default_value_t = 5,
        value_parser = chima_engine::priority::Priority::parse_nice,
        global = true
    )]
    pub worker_nice: u8,

    /// The I/O class providers and git run in: `best-effort:0` to `best-effort:7`
    /// (the lowest best-effort level), `idle`, or `unchanged`.
    #[arg(
        long,
        env = "FASENG_PROVIDER_IO",
        default_value = "best-effort:7",
        value_parser = clap::builder::ValueParser::new(str::parse::<chima_engine::priority::IoClass>),
        global = true
    )]
    pub provider_io: chima_engine::priority::IoClass,

    /// Run providers as this user (a name in /etc/passwd, or `uid:gid`) when faseng
    /// runs as root, so that a deploy script cannot read faseng's memory, files or
    /// secrets. Required to be unset when faseng is not root.
    #[arg(long, env = "FASENG_RUN_AS", global = true)]
    pub run_as: Option<String>,

    /// GITHUB_WEBHOOK_SECRET read from this file instead (one trailing newline is dropped).
    #[arg(long, env = "GITHUB_WEBHOOK_SECRET_FILE", global = true)]
    pub webhook_secret_file: Option<PathBuf>,

    /// FASENG_METRICS_TOKEN read from this file instead (one trailing newline is dropped).
    #[arg(long, env = "FASENG_METRICS_TOKEN_FILE", global = true)]
    pub metrics_token_file: Option<PathBuf>,

    /// HEROKU_API_KEY read from this file instead (one trailing newline is dropped).
    #[arg(long, env = "HEROKU_API_KEY_FILE", global = true)]
    pub heroku_api_key_file: Option<PathBuf>,

    /// What to run; `serve` when none is given.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// faseng's subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Web (webhooks, pages) and workers: the default.
    Serve,
    /// Workers only, no HTTP.
    Worker,
    /// Apply database migrations and exit.
    Migrate,
    /// Print the GitHub App manifest (JSON) for faseng at `--url`, or, with
    /// `--exchange CODE`, turn the code GitHub redirects to into faseng's settings.
    GithubAppManifest(manifest::ManifestArgs),
    /// Check the settings against the live services: one line per check, with what
    /// to fix; exits 0 only when every configured feature's checks pass.
    Doctor,
}
