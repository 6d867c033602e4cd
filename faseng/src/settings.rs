//! faseng's settings: every one an environment variable and a flag (`--help`).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::manifest;

/// The deploy service behind chima: queues and runs deployments.
#[derive(Debug, Parser)]
#[command(name = "faseng", version, about, long_about = None)]
pub struct Args {
    /// The job store: `postgres://...` in production, `sqlite://file.db` on one machine.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "sqlite://faseng.db",
        global = true
    )]
    pub database_url: String,

    /// The apps config, used for deployments whose payload carries none.
    #[arg(
        long = "apps",
        env = "APPS_JSON",
        default_value = "config/app.json",
        global = true
    )]
    pub apps: PathBuf,

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

    /// Key that signs log page links (default: derived from the webhook secret).
    #[arg(long, env = "FASENG_API_TOKEN", hide_env_values = true, global = true)]
    pub api_token: Option<String>,

    /// The key chima signs its requests with (shared with chima). Default: a key
    /// derived from FASENG_API_TOKEN. Without either, every deployment counts as its
    /// GitHub creator only.
    #[arg(long, env = "CHIMA_SIGNING_KEY", hide_env_values = true, global = true)]
    pub chima_signing_key: Option<String>,

    /// GitHub token, for deployment statuses and clones of private repositories.
    #[arg(long, env = "GITHUB_TOKEN", hide_env_values = true, global = true)]
    pub github_token: Option<String>,

    /// GitHub App id (with GITHUB_APP_PRIVATE_KEY), instead of a token.
    #[arg(long, env = "GITHUB_APP_ID", global = true)]
    pub github_app_id: Option<u64>,

    /// GitHub App private key (PEM text).
    #[arg(
        long,
        env = "GITHUB_APP_PRIVATE_KEY",
        hide_env_values = true,
        global = true
    )]
    pub github_app_private_key: Option<String>,

    /// GitHub API base URL (GitHub Enterprise: https://HOST/api/v3).
    #[arg(long, env = "GITHUB_API_URL", default_value = chima_github::DEFAULT_API_URL, global = true)]
    pub github_api_url: String,

    /// Slack bot token (xoxb-...): deployment messages go to Slack.
    #[arg(long, env = "SLACK_BOT_TOKEN", hide_env_values = true, global = true)]
    pub slack_bot_token: Option<String>,

    /// Slack Web API base URL.
    #[arg(long, env = "SLACK_API_URL", default_value = chima_slack::DEFAULT_API_URL, global = true)]
    pub slack_api_url: String,

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

    /// How long a claim lasts without renewal (seconds). Renewed every tenth of
    /// it; a provider whose faseng cannot renew (frozen, dead, cut off from the
    /// database) is stopped by its guard a tenth of it before another faseng may
    /// declare it lost. 60 s rides out a database outage of up to 48 s.
    #[arg(long, env = "FASENG_LEASE_SECS", default_value_t = 60, global = true)]
    pub lease_secs: u64,

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

    /// Run providers as this user (a name in /etc/passwd, or `uid:gid`) when faseng
    /// runs as root, so that a deploy script cannot read faseng's memory, files or
    /// secrets. Required to be unset when faseng is not root.
    #[arg(long, env = "FASENG_RUN_AS", global = true)]
    pub run_as: Option<String>,

    /// GITHUB_WEBHOOK_SECRET read from this file instead (one trailing newline is dropped).
    #[arg(long, env = "GITHUB_WEBHOOK_SECRET_FILE", global = true)]
    pub webhook_secret_file: Option<PathBuf>,

    /// FASENG_API_TOKEN read from this file instead (one trailing newline is dropped).
    #[arg(long, env = "FASENG_API_TOKEN_FILE", global = true)]
    pub api_token_file: Option<PathBuf>,

    /// CHIMA_SIGNING_KEY read from this file instead (one trailing newline is dropped).
    #[arg(long, env = "CHIMA_SIGNING_KEY_FILE", global = true)]
    pub chima_signing_key_file: Option<PathBuf>,

    /// FASENG_METRICS_TOKEN read from this file instead (one trailing newline is dropped).
    #[arg(long, env = "FASENG_METRICS_TOKEN_FILE", global = true)]
    pub metrics_token_file: Option<PathBuf>,

    /// GITHUB_TOKEN read from this file instead (one trailing newline is dropped).
    #[arg(long, env = "GITHUB_TOKEN_FILE", global = true)]
    pub github_token_file: Option<PathBuf>,

    /// GITHUB_APP_PRIVATE_KEY read from this file instead (one trailing newline is dropped).
    #[arg(long, env = "GITHUB_APP_PRIVATE_KEY_FILE", global = true)]
    pub github_app_private_key_file: Option<PathBuf>,

    /// SLACK_BOT_TOKEN read from this file instead (one trailing newline is dropped).
    #[arg(long, env = "SLACK_BOT_TOKEN_FILE", global = true)]
    pub slack_bot_token_file: Option<PathBuf>,

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
