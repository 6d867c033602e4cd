//! chima's settings: every one an environment variable and a flag
//! (README, "Configuration").

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use chima_command::Addressee;
use chima_config::Secret;
use chima_github::{Auth, GitHub, GitHubConfig};
use clap::Args;

#[derive(Debug, Clone, Args)]
pub struct Settings {
    /// The name the bot answers to in chat.
    #[arg(long, env = "CHIMA_NAME", default_value = "chima", global = true)]
    pub name: String,

    /// Other names the bot answers to, comma-separated (none by default).
    #[arg(long, env = "CHIMA_ALIASES", value_delimiter = ',', global = true)]
    pub aliases: Vec<String>,

    /// The apps config (hubot-deploy apps.json format).
    #[arg(
        long = "apps",
        env = "APPS_JSON",
        default_value = "config/app.json",
        global = true
    )]
    pub apps: PathBuf,

    /// Where deployments are stored in the embedded mode.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "sqlite://faseng.db",
        global = true
    )]
    pub database_url: String,

    /// The environment used when neither the command nor the app names one.
    #[arg(
        long,
        env = "CHIMA_DEFAULT_ENVIRONMENT",
        default_value = "production",
        global = true
    )]
    pub default_environment: String,

    /// Deployments run at once by the embedded engine.
    #[arg(long, env = "FASENG_WORKERS", default_value_t = 2, global = true)]
    pub workers: usize,

    /// GitHub token: deployments are created on GitHub instead of run here.
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

    /// Slack bot token (xoxb-...): chima runs on Slack instead of the terminal.
    #[arg(long, env = "SLACK_BOT_TOKEN", hide_env_values = true, global = true)]
    pub slack_bot_token: Option<String>,

    /// Slack app-level token (xapp-...) for Socket Mode.
    #[arg(long, env = "SLACK_APP_TOKEN", hide_env_values = true, global = true)]
    pub slack_app_token: Option<String>,

    /// Slack signing secret: serve the Events API and slash commands on CHIMA_LISTEN.
    #[arg(
        long,
        env = "SLACK_SIGNING_SECRET",
        hide_env_values = true,
        global = true
    )]
    pub slack_signing_secret: Option<String>,

    /// Slack Web API base URL.
    #[arg(long, env = "SLACK_API_URL", default_value = chima_slack::DEFAULT_API_URL, global = true)]
    pub slack_api_url: String,

    /// Address for the Slack Events API (only with SLACK_SIGNING_SECRET).
    #[arg(
        long,
        env = "CHIMA_LISTEN",
        default_value = "127.0.0.1:3000",
        global = true
    )]
    pub listen: String,

    /// faseng's URL, for locks, cancel, rollback and history (GitHub mode).
    #[arg(long, env = "FASENG_URL", global = true)]
    pub faseng_url: Option<String>,

    /// The key chima signs its deployment requests with, shared with faseng. Default: a
    /// key derived from FASENG_API_TOKEN.
    #[arg(long, env = "CHIMA_SIGNING_KEY", hide_env_values = true, global = true)]
    pub chima_signing_key: Option<String>,

    /// faseng's API token.
    #[arg(long, env = "FASENG_API_TOKEN", hide_env_values = true, global = true)]
    pub faseng_api_token: Option<String>,

    /// How long a deployment's claim lasts without renewal (seconds); a
    /// process that dies mid-deploy has its deployment declared lost after it.
    #[arg(
        long,
        env = "FASENG_LEASE_SECS",
        default_value_t = 60,
        hide = true,
        global = true
    )]
    pub lease_secs: u64,

    /// GITHUB_TOKEN read from this file instead (one trailing newline is dropped).
    #[arg(long, env = "GITHUB_TOKEN_FILE", global = true)]
    pub github_token_file: Option<PathBuf>,

    /// GITHUB_APP_PRIVATE_KEY read from this file instead (one trailing newline is dropped).
    #[arg(long, env = "GITHUB_APP_PRIVATE_KEY_FILE", global = true)]
    pub github_app_private_key_file: Option<PathBuf>,

    /// SLACK_BOT_TOKEN read from this file instead (one trailing newline is dropped).
    #[arg(long, env = "SLACK_BOT_TOKEN_FILE", global = true)]
    pub slack_bot_token_file: Option<PathBuf>,

    /// SLACK_APP_TOKEN read from this file instead (one trailing newline is dropped).
    #[arg(long, env = "SLACK_APP_TOKEN_FILE", global = true)]
    pub slack_app_token_file: Option<PathBuf>,

    /// SLACK_SIGNING_SECRET read from this file instead (one trailing newline is dropped).
    #[arg(long, env = "SLACK_SIGNING_SECRET_FILE", global = true)]
    pub slack_signing_secret_file: Option<PathBuf>,

    /// FASENG_API_TOKEN read from this file instead (one trailing newline is dropped).
    #[arg(long, env = "FASENG_API_TOKEN_FILE", global = true)]
    pub faseng_api_token_file: Option<PathBuf>,

    /// CHIMA_SIGNING_KEY read from this file instead (one trailing newline is dropped).
    #[arg(long, env = "CHIMA_SIGNING_KEY_FILE", global = true)]
    pub chima_signing_key_file: Option<PathBuf>,
}

impl Settings {
    /// Every secret from its setting or its `*_FILE`, checked: FASENG_API_TOKEN,
    /// CHIMA_SIGNING_KEY and SLACK_SIGNING_SECRET must be at least
    /// [`chima_config::MIN_SECRET_BYTES`] long; an empty token of another service reads
    /// as unset. The error names the setting, never its value.
    pub fn load_secrets(&mut self) -> anyhow::Result<()> {
        match self.check_secrets().into_iter().find_map(|(_, r)| r.err()) {
            Some(e) => Err(anyhow::anyhow!("{e}")),
            None => Ok(()),
        }
    }

    /// [`Settings::load_secrets`] for each secret, in order: its name and whether it
    /// loaded (a refused one's message names the setting and what to do).
    pub fn check_secrets(&mut self) -> Vec<(&'static str, Result<(), String>)> {
        use chima_config::SecretKind::{Issued, Shared};
        let mut results = Vec::new();
        for (name, value, file, kind) in [
            (
                "GITHUB_TOKEN",
                &mut self.github_token,
                &self.github_token_file,
                Issued,
            ),
            (
                "GITHUB_APP_PRIVATE_KEY",
                &mut self.github_app_private_key,
                &self.github_app_private_key_file,
                Issued,
            ),
            (
                "SLACK_BOT_TOKEN",
                &mut self.slack_bot_token,
                &self.slack_bot_token_file,
                Issued,
            ),
            (
                "SLACK_APP_TOKEN",
                &mut self.slack_app_token,
                &self.slack_app_token_file,
                Issued,
            ),
            (
                "SLACK_SIGNING_SECRET",
                &mut self.slack_signing_secret,
                &self.slack_signing_secret_file,
                Shared,
            ),
            (
                "FASENG_API_TOKEN",
                &mut self.faseng_api_token,
                &self.faseng_api_token_file,
                Shared,
            ),
            (
                "CHIMA_SIGNING_KEY",
                &mut self.chima_signing_key,
                &self.chima_signing_key_file,
                Shared,
            ),
        ] {
            let loaded = chima_config::load_secret(name, value, file.as_deref(), kind)
                .map_err(|e| e.to_string());
            results.push((name, loaded));
        }
        results
    }

    /// faseng's API client, when FASENG_URL is set.
    pub fn faseng(&self) -> anyhow::Result<Option<crate::faseng_api::FasengApi>> {
        let Some(url) = self.faseng_url.as_ref().filter(|u| !u.is_empty()) else {
            return Ok(None);
        };
        let token = self
            .faseng_api_token
            .clone()
            .filter(|t| !t.is_empty())
            .context("FASENG_URL is set but FASENG_API_TOKEN is not")?;
        Ok(Some(crate::faseng_api::FasengApi::new(
            url,
            Secret::new(token),
        )?))
    }

    /// The key for chima's signed requests: CHIMA_SIGNING_KEY, else one derived from
    /// FASENG_API_TOKEN (faseng derives the same). Without either, chima says so once:
    /// its deployments then count as its GitHub login only, as with hubot-deploy.
    pub fn signing_key(&self) -> Option<chima_payload::SigningKey> {
        match (&self.chima_signing_key, &self.faseng_api_token) {
            (Some(k), _) if !k.is_empty() => Some(chima_payload::SigningKey::new(k.as_bytes())),
            (_, Some(t)) if !t.is_empty() => Some(
                chima_payload::SigningKey::derived_from_api_token(t.as_bytes()),
            ),
            _ => {
                tracing::warn!(
                    "neither CHIMA_SIGNING_KEY nor FASENG_API_TOKEN is set: faseng cannot tell who asked for a deployment, so each counts as chima's GitHub login only (allowed_users then need github:<login>)"
                );
                None
            }
        }
    }

    pub fn addressee(&self) -> Addressee {
        Addressee {
            name: self.name.clone(),
            aliases: self
                .aliases
                .iter()
                .map(|a| a.trim().to_string())
                .filter(|a| !a.is_empty())
                .collect(),
            user_id: None,
            direct: false,
        }
    }

    pub fn lease(&self) -> Duration {
        Duration::from_secs(self.lease_secs.max(1))
    }

    /// The GitHub client, when credentials are set.
    pub fn github(&self) -> anyhow::Result<Option<GitHub>> {
        let auth = Auth::from_settings(
            self.github_token.as_deref(),
            self.github_app_id,
            self.github_app_private_key.as_deref(),
        )?;
        let Some(auth) = auth else { return Ok(None) };
        let gh = GitHub::new(GitHubConfig {
            api_url: self.github_api_url.clone(),
            auth,
        })
        .context("cannot set up the GitHub client")?;
        Ok(Some(gh))
    }
}

pub fn init_tracing(default: &str) {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default)),
        )
        .with_writer(std::io::stderr)
        .try_init();
}

/// The async runtime; `None`, said on stderr, when it cannot start.
pub fn runtime() -> Option<tokio::runtime::Runtime> {
    tokio::runtime::Runtime::new()
        .map_err(|e| eprintln!("chima: cannot start the async runtime: {e}"))
        .ok()
}
