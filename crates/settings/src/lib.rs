//! The settings chima and faseng read alike, defined once.
//!
//! Both binaries talk to the same GitHub and the same Slack with the same
//! variables (`GITHUB_TOKEN`, `GITHUB_APP_ID`, `SLACK_BOT_TOKEN`, ...), read every
//! secret from its setting or its `*_FILE`, log to stderr and stop on SIGTERM. Each
//! binary flattens the argument groups here into its own clap `Args`, so a setting
//! means the same thing, with the same default and the same checks, in both.

#![warn(missing_docs)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use chima_config::SecretKind;
use chima_github::{Auth, GitHub, GitHubConfig, GitHubError};
use chima_payload::SigningKey;
use clap::Args;

/// What both binaries deploy from: the apps config, the store, the claim's lease.
#[derive(Debug, Clone, Args)]
pub struct DeployArgs {
    /// The apps config (hubot-deploy apps.json format).
    #[arg(
        long = "apps",
        env = "APPS_JSON",
        default_value = "config/app.json",
        global = true
    )]
    pub apps: PathBuf,

    /// The job store: `postgres://...` in production, `sqlite://file.db` on one
    /// machine (chima's embedded mode).
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "sqlite://faseng.db",
        global = true
    )]
    pub database_url: String,

    /// How long a claim lasts without renewal (seconds). Renewed every tenth of
    /// it; a provider whose process cannot renew (frozen, dead, cut off from the
    /// database) is stopped by its guard a tenth of it before another process may
    /// declare it lost. 60 s rides out a database outage of up to 48 s.
    #[arg(long, env = "FASENG_LEASE_SECS", default_value_t = 60, global = true)]
    pub lease_secs: u64,
}

impl DeployArgs {
    /// The lease, at least a second.
    pub fn lease(&self) -> Duration {
        Duration::from_secs(self.lease_secs.max(1))
    }
}

/// How to reach GitHub: a token or a GitHub App, and the API's URL.
#[derive(Debug, Clone, Args)]
pub struct GitHubArgs {
    /// GitHub token (deployments, statuses, clones of private repositories).
    #[arg(long, env = "GITHUB_TOKEN", hide_env_values = true, global = true)]
    pub github_token: Option<String>,

    /// GITHUB_TOKEN read from this file instead (one trailing newline is dropped).
    #[arg(long, env = "GITHUB_TOKEN_FILE", global = true)]
    pub github_token_file: Option<PathBuf>,

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

    /// GITHUB_APP_PRIVATE_KEY read from this file instead (one trailing newline is dropped).
    #[arg(long, env = "GITHUB_APP_PRIVATE_KEY_FILE", global = true)]
    pub github_app_private_key_file: Option<PathBuf>,

    /// GitHub API base URL (GitHub Enterprise: https://HOST/api/v3).
    #[arg(long, env = "GITHUB_API_URL", default_value = chima_github::DEFAULT_API_URL, global = true)]
    pub github_api_url: String,
}

impl GitHubArgs {
    /// The GitHub secrets, to be read with [`check_secrets`].
    pub fn secrets(&mut self) -> [SecretSetting<'_>; 2] {
        [
            SecretSetting::issued(
                "GITHUB_TOKEN",
                &mut self.github_token,
                &self.github_token_file,
            ),
            SecretSetting::issued(
                "GITHUB_APP_PRIVATE_KEY",
                &mut self.github_app_private_key,
                &self.github_app_private_key_file,
            ),
        ]
    }

    /// The GitHub client these settings describe; `None` when no credentials are
    /// set. An App id without its key is an error, never a silent fallback.
    pub fn client(&self) -> Result<Option<GitHub>, GitHubError> {
        let auth = Auth::from_settings(
            self.github_token.as_deref(),
            self.github_app_id,
            self.github_app_private_key.as_deref(),
        )?;
        let Some(auth) = auth else { return Ok(None) };
        GitHub::new(GitHubConfig {
            api_url: self.github_api_url.clone(),
            auth,
        })
        .map(Some)
    }
}

/// How to post to Slack as the bot.
#[derive(Debug, Clone, Args)]
pub struct SlackBotArgs {
    /// Slack bot token (xoxb-...).
    #[arg(long, env = "SLACK_BOT_TOKEN", hide_env_values = true, global = true)]
    pub slack_bot_token: Option<String>,

    /// SLACK_BOT_TOKEN read from this file instead (one trailing newline is dropped).
    #[arg(long, env = "SLACK_BOT_TOKEN_FILE", global = true)]
    pub slack_bot_token_file: Option<PathBuf>,

    /// Slack Web API base URL.
    #[arg(long, env = "SLACK_API_URL", default_value = chima_slack::DEFAULT_API_URL, global = true)]
    pub slack_api_url: String,
}

impl SlackBotArgs {
    /// The bot token when one is set (an empty one reads as unset).
    pub fn bot_token(&self) -> Option<&str> {
        self.slack_bot_token.as_deref().filter(|t| !t.is_empty())
    }

    /// The Slack secret, to be read with [`check_secrets`].
    pub fn secrets(&mut self) -> [SecretSetting<'_>; 1] {
        [SecretSetting::issued(
            "SLACK_BOT_TOKEN",
            &mut self.slack_bot_token,
            &self.slack_bot_token_file,
        )]
    }
}

/// How Slack reaches chima (chima only): Socket Mode with an app-level token, or the
/// Events API on an address of chima's, checked with the signing secret.
#[derive(Debug, Clone, Args)]
pub struct SlackTransportArgs {
    /// Slack app-level token (xapp-...) for Socket Mode.
    #[arg(long, env = "SLACK_APP_TOKEN", hide_env_values = true, global = true)]
    pub slack_app_token: Option<String>,

    /// SLACK_APP_TOKEN read from this file instead (one trailing newline is dropped).
    #[arg(long, env = "SLACK_APP_TOKEN_FILE", global = true)]
    pub slack_app_token_file: Option<PathBuf>,

    /// Slack signing secret: serve the Events API and slash commands on CHIMA_LISTEN.
    #[arg(
        long,
        env = "SLACK_SIGNING_SECRET",
        hide_env_values = true,
        global = true
    )]
    pub slack_signing_secret: Option<String>,

    /// SLACK_SIGNING_SECRET read from this file instead (one trailing newline is dropped).
    #[arg(long, env = "SLACK_SIGNING_SECRET_FILE", global = true)]
    pub slack_signing_secret_file: Option<PathBuf>,

    /// Address for the Slack Events API (only with SLACK_SIGNING_SECRET).
    #[arg(
        long,
        env = "CHIMA_LISTEN",
        default_value = "127.0.0.1:3000",
        global = true
    )]
    pub listen: String,
}

impl SlackTransportArgs {
    /// The app token and the signing secret, to be read with [`check_secrets`].
    pub fn secrets(&mut self) -> [SecretSetting<'_>; 2] {
        [
            SecretSetting::issued(
                "SLACK_APP_TOKEN",
                &mut self.slack_app_token,
                &self.slack_app_token_file,
            ),
            SecretSetting::shared(
                "SLACK_SIGNING_SECRET",
                &mut self.slack_signing_secret,
                &self.slack_signing_secret_file,
            ),
        ]
    }
}

/// The secrets chima and faseng share: faseng's API token and the key chima signs
/// its deployment requests with.
#[derive(Debug, Clone, Args)]
pub struct SharedKeyArgs {
    /// faseng's API token: chima calls faseng's API with it, faseng signs its log
    /// links with it (without it, with a key derived from the webhook secret).
    #[arg(long, env = "FASENG_API_TOKEN", hide_env_values = true, global = true)]
    pub faseng_api_token: Option<String>,

    /// FASENG_API_TOKEN read from this file instead (one trailing newline is dropped).
    #[arg(long, env = "FASENG_API_TOKEN_FILE", global = true)]
    pub faseng_api_token_file: Option<PathBuf>,

    /// The key chima signs its deployment requests with and faseng checks them with.
    /// Default: a key derived from FASENG_API_TOKEN. Without either, every deployment
    /// counts as its GitHub creator only.
    #[arg(long, env = "CHIMA_SIGNING_KEY", hide_env_values = true, global = true)]
    pub chima_signing_key: Option<String>,

    /// CHIMA_SIGNING_KEY read from this file instead (one trailing newline is dropped).
    #[arg(long, env = "CHIMA_SIGNING_KEY_FILE", global = true)]
    pub chima_signing_key_file: Option<PathBuf>,
}

impl SharedKeyArgs {
    /// The shared secrets, to be read with [`check_secrets`].
    pub fn secrets(&mut self) -> [SecretSetting<'_>; 2] {
        [
            SecretSetting::shared(
                "FASENG_API_TOKEN",
                &mut self.faseng_api_token,
                &self.faseng_api_token_file,
            ),
            SecretSetting::shared(
                "CHIMA_SIGNING_KEY",
                &mut self.chima_signing_key,
                &self.chima_signing_key_file,
            ),
        ]
    }

    /// faseng's API token when one is set.
    pub fn api_token(&self) -> Option<&str> {
        self.faseng_api_token.as_deref().filter(|t| !t.is_empty())
    }

    /// The key chima signs its requests with and faseng checks them with:
    /// `CHIMA_SIGNING_KEY`, else one derived from `FASENG_API_TOKEN` (both sides
    /// derive the same); `None` without either.
    pub fn signing_key(&self) -> Option<SigningKey> {
        match (
            self.chima_signing_key.as_deref().filter(|k| !k.is_empty()),
            self.api_token(),
        ) {
            (Some(k), _) => Some(SigningKey::new(k.as_bytes())),
            (None, Some(t)) => Some(SigningKey::derived_from_api_token(t.as_bytes())),
            (None, None) => None,
        }
    }
}

/// One secret setting: its name, the value given (flag or variable), its `*_FILE`,
/// and how it is checked.
pub struct SecretSetting<'a> {
    name: &'static str,
    value: &'a mut Option<String>,
    file: Option<&'a Path>,
    kind: SecretKind,
}

impl<'a> SecretSetting<'a> {
    /// A secret both sides share (at least [`chima_config::MIN_SECRET_BYTES`]).
    pub fn shared(
        name: &'static str,
        value: &'a mut Option<String>,
        file: &'a Option<PathBuf>,
    ) -> Self {
        SecretSetting {
            name,
            value,
            file: file.as_deref(),
            kind: SecretKind::Shared,
        }
    }

    /// A token another service issued (empty reads as unset).
    pub fn issued(
        name: &'static str,
        value: &'a mut Option<String>,
        file: &'a Option<PathBuf>,
    ) -> Self {
        SecretSetting {
            name,
            value,
            file: file.as_deref(),
            kind: SecretKind::Issued,
        }
    }
}

/// Reads each secret in place from its setting or its `*_FILE`, in order: its name
/// and whether it loaded (a refused one's message names the setting and what to do,
/// never its value). `doctor` shows each; a start stops at the first refusal
/// ([`first_refusal`]).
pub fn check_secrets<'a>(
    secrets: impl IntoIterator<Item = SecretSetting<'a>>,
) -> Vec<(&'static str, Result<(), String>)> {
    secrets
        .into_iter()
        .map(|s| {
            let loaded = chima_config::load_secret(s.name, s.value, s.file, s.kind)
                .map_err(|e| e.to_string());
            (s.name, loaded)
        })
        .collect()
}

/// The first refusal among [`check_secrets`]'s results, as the error to stop with.
pub fn first_refusal(results: Vec<(&'static str, Result<(), String>)>) -> Result<(), String> {
    results.into_iter().try_for_each(|(_, r)| r)
}

/// Logs to stderr, filtered by `RUST_LOG`, else by `default` (`info`, `warn`, `off`).
pub fn init_tracing(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Resolves on Ctrl-C or SIGTERM (systemd's stop), whichever comes first.
pub async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
    tracing::info!("shutting down");
}
