//! chima's settings: every one an environment variable and a flag
//! (README, "Configuration").

use std::time::Duration;

use anyhow::Context;
use chima_command::Addressee;
use chima_config::Secret;
use chima_settings::{DeployArgs, GitHubArgs, SharedKeyArgs, SlackBotArgs, SlackTransportArgs};
use clap::Args;

#[derive(Debug, Clone, Args)]
pub struct Settings {
    /// GitHub: with credentials, deployments are created on GitHub instead of run here.
    #[command(flatten)]
    pub github: GitHubArgs,

    /// Slack: with a bot token, chima runs on Slack instead of the terminal.
    #[command(flatten)]
    pub slack: SlackBotArgs,

    /// How Slack reaches chima: Socket Mode or the Events API.
    #[command(flatten)]
    pub slack_in: SlackTransportArgs,

    /// The apps config, the embedded mode's store and its lease.
    #[command(flatten)]
    pub deploy: DeployArgs,

    /// faseng's API token and the key chima signs its requests with.
    #[command(flatten)]
    pub keys: SharedKeyArgs,

    /// The name the bot answers to in chat.
    #[arg(long, env = "CHIMA_NAME", default_value = "chima", global = true)]
    pub name: String,

    /// Other names the bot answers to, comma-separated (none by default).
    #[arg(long, env = "CHIMA_ALIASES", value_delimiter = ',', global = true)]
    pub aliases: Vec<String>,

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

    /// faseng's URL, for locks, cancel, rollback and history (GitHub mode).
    #[arg(long, env = "FASENG_URL", global = true)]
    pub faseng_url: Option<String>,
}

impl Settings {
    /// Every secret from its setting or its `*_FILE`, checked: FASENG_API_TOKEN,
    /// CHIMA_SIGNING_KEY and SLACK_SIGNING_SECRET must be at least
    /// [`chima_config::MIN_SECRET_BYTES`] long; an empty token of another service reads
    /// as unset. The error names the setting, never its value.
    pub fn load_secrets(&mut self) -> anyhow::Result<()> {
        chima_settings::first_refusal(self.check_secrets()).map_err(anyhow::Error::msg)
    }

    /// [`Settings::load_secrets`] for each secret, in order: its name and whether it
    /// loaded (a refused one's message names the setting and what to do).
    pub fn check_secrets(&mut self) -> Vec<(&'static str, Result<(), String>)> {
        let mut secrets = Vec::new();
        secrets.extend(self.github.secrets());
        secrets.extend(self.slack.secrets());
        secrets.extend(self.slack_in.secrets());
        secrets.extend(self.keys.secrets());
        chima_settings::check_secrets(secrets)
    }

    /// faseng's API client, when FASENG_URL is set.
    pub fn faseng(&self) -> anyhow::Result<Option<crate::faseng_api::FasengApi>> {
        let Some(url) = self.faseng_url.as_ref().filter(|u| !u.is_empty()) else {
            return Ok(None);
        };
        let token = self
            .keys
            .api_token()
            .map(str::to_string)
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
        let key = self.keys.signing_key();
        if key.is_none() {
            tracing::warn!(
                "neither CHIMA_SIGNING_KEY nor FASENG_API_TOKEN is set: faseng cannot tell who asked for a deployment, so each counts as chima's GitHub login only (allowed_users then need github:<login>)"
            );
        }
        key
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
        self.deploy.lease()
    }

    /// The GitHub client, when credentials are set.
    pub fn github(&self) -> anyhow::Result<Option<chima_github::GitHub>> {
        self.github
            .client()
            .context("cannot set up the GitHub client")
    }
}

/// The async runtime; `None`, said on stderr, when it cannot start.
pub fn runtime() -> Option<tokio::runtime::Runtime> {
    tokio::runtime::Runtime::new()
        .map_err(|e| eprintln!("chima: cannot start the async runtime: {e}"))
        .ok()
}
