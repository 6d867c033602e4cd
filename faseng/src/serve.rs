//! Wiring: the store, the engine, the notification senders and the web
//! server, started and stopped together.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chima_config::{Apps, Secret};
use chima_engine::{Engine, EngineConfig};
use chima_store::Store;
use tokio::sync::watch;

use crate::links::LinkSigner;
use crate::web::{self, AppState};
use crate::{Args, Command};

/// Runs the command `args` names (`serve` when none): `migrate` applies the
/// migrations and returns; `serve` and `worker` run until shut down.
pub async fn run(mut args: Args) -> anyhow::Result<()> {
    let command = args.command.clone().unwrap_or(Command::Serve);
    if !matches!(command, Command::Migrate) {
        load_secrets(&mut args)?;
    }
    let store = chima_store::open(&args.deploy.database_url)
        .await
        .context("cannot open the job store (DATABASE_URL)")?;
    if let Command::Migrate = command {
        tracing::info!("migrations applied");
        return Ok(());
    }
    let apps = load_apps(&args.deploy.apps)?;
    if signing_key(&args).is_none() {
        tracing::warn!(
            "neither CHIMA_SIGNING_KEY nor FASENG_API_TOKEN is set: chima's requests cannot be verified, so every deployment counts as its GitHub creator only (allowed_users need github:<login> entries)"
        );
    }
    let github = github_client(&args)?;
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let links = LinkSigner::new(link_key(&args).as_bytes());
    let public_url = args
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{}", args.listen));

    let mut engine_cfg = engine_config(&args, apps.clone())?;
    let metrics = Arc::new(crate::metrics::Metrics::default());
    let mut senders = Vec::new();
    if let Some(gh) = &github {
        engine_cfg.access = Some(Arc::new(crate::access::GitHubAccess { gh: gh.clone() }));
        let (links, public_url) = (links.clone(), public_url.clone());
        let log_url: Arc<dyn Fn(i64) -> String + Send + Sync> =
            Arc::new(move |id| links.url(&public_url, id));
        senders.push(tokio::spawn(chima_outbox::run(
            store.clone(),
            Arc::new(chima_github::StatusDeliverer::new(gh.clone(), log_url)),
            shutdown_rx.clone(),
            chima_outbox::OutboxOptions {
                timing: chima_outbox::Timing::new({
                    let metrics = metrics.clone();
                    move |took| metrics.statuses.observe(took.as_secs_f64())
                }),
                ..chima_outbox::OutboxOptions::default()
            },
        )));
    } else {
        tracing::warn!(
            "no GitHub credentials (GITHUB_TOKEN or GITHUB_APP_ID): no deployment statuses will be posted"
        );
    }
    let mut slack = None;
    if let Some(token) = args.slack.bot_token() {
        let mut cfg = chima_slack::SlackConfig::new(Secret::new(token.to_string()));
        cfg.api_url = args.slack.slack_api_url.clone();
        let api = chima_slack::SlackApi::new(&cfg).context("cannot set up the Slack client")?;
        slack = Some(api.clone());
        let (links, public_url) = (links.clone(), public_url.clone());
        let rooms = apps.clone();
        let chat = chima_slack::ChatDeliverer::new(
            Arc::new(chima_outbox::StoreChatRecords(store.clone())),
            api,
            Arc::new(move |id| links.url(&public_url, id)),
            Arc::new(move |app: &str| {
                rooms
                    .as_ref()
                    .and_then(|a| a.get(app))
                    .and_then(|a| a.notify_room.clone())
            }),
        );
        senders.push(tokio::spawn(chima_outbox::run(
            store.clone(),
            Arc::new(chat),
            shutdown_rx.clone(),
            chima_outbox::OutboxOptions::chat(),
        )));
        engine_cfg.secrets.push(token.to_string());
    }
    if let Some(t) = &args.github.github_token {
        engine_cfg.secrets.push(t.clone());
    }
    let autodeploy = match (&github, &apps) {
        (Some(gh), Some(apps)) if apps.iter().any(|a| !a.auto_deploy.is_empty()) => {
            Some(crate::autodeploy::AutoDeployer {
                store: store.clone(),
                apps: apps.clone(),
                github: gh.clone(),
                slack: slack.clone(),
                signing_key: signing_key(&args),
            })
        }
        _ => None,
    };
    let engine_metrics = engine_cfg.metrics.clone();
    let engine = if args.workers > 0 || matches!(command, Command::Worker) {
        Some(Engine::start(store.clone(), engine_cfg))
    } else {
        None
    };

    let result = match command {
        Command::Worker => {
            chima_settings::shutdown_signal().await;
            Ok(())
        }
        _ => {
            serve_http(
                &args,
                store.clone(),
                apps,
                links,
                public_url,
                engine.as_ref().map(|_| engine_metrics),
                metrics,
                autodeploy,
            )
            .await
        }
    };
    let _ = shutdown_tx.send(true);
    if let Some(engine) = engine {
        tracing::info!(grace_secs = args.shutdown_grace, "stopping workers");
        engine
            .shutdown_within(Duration::from_secs(args.shutdown_grace))
            .await;
    }
    for s in senders {
        let _ = s.await;
    }
    result
}

/// The GitHub client the settings describe; `None` when no credentials are set.
pub fn github_client(args: &Args) -> anyhow::Result<Option<chima_github::GitHub>> {
    args.github
        .client()
        .context("cannot set up the GitHub client")
}

/// Every secret from its setting or its `*_FILE`, checked: the shared secrets
/// (webhook secret, API token, signing key, metrics token) must be at least
/// [`chima_config::MIN_SECRET_BYTES`] long; an empty token of another service
/// (`GITHUB_TOKEN=`) reads as unset, as it always did. A refused
/// secret stops faseng at start, saying which and what to do, never its value.
pub fn load_secrets(args: &mut Args) -> anyhow::Result<()> {
    chima_settings::first_refusal(check_secrets(args)).map_err(anyhow::Error::msg)
}

/// [`load_secrets`] for each secret, in order: its name and whether it loaded (a
/// refused one's message says which setting and what to do).
pub fn check_secrets(args: &mut Args) -> Vec<(&'static str, Result<(), String>)> {
    use chima_settings::SecretSetting;
    let mut secrets = vec![
        SecretSetting::shared(
            "GITHUB_WEBHOOK_SECRET",
            &mut args.webhook_secret,
            &args.webhook_secret_file,
        ),
        SecretSetting::shared(
            "FASENG_METRICS_TOKEN",
            &mut args.metrics_token,
            &args.metrics_token_file,
        ),
    ];
    secrets.extend(args.keys.secrets());
    secrets.extend(args.github.secrets());
    secrets.extend(args.slack.secrets());
    secrets.push(SecretSetting::issued(
        "HEROKU_API_KEY",
        &mut args.heroku_api_key,
        &args.heroku_api_key_file,
    ));
    chima_settings::check_secrets(secrets)
}

/// The key chima's requests are checked with: CHIMA_SIGNING_KEY, else one derived
/// from FASENG_API_TOKEN (chima derives the same).
pub fn signing_key(args: &Args) -> Option<chima_payload::SigningKey> {
    args.keys.signing_key()
}

/// The key that signs log links: FASENG_API_TOKEN, else the webhook secret.
fn link_key(args: &Args) -> String {
    let key = args
        .keys
        .faseng_api_token
        .clone()
        .or_else(|| args.webhook_secret.clone())
        .unwrap_or_default();
    if key.is_empty() {
        tracing::warn!(
            "neither FASENG_API_TOKEN nor GITHUB_WEBHOOK_SECRET is set: log links are signed with an empty key"
        );
    }
    key
}

/// The web host of a GitHub API URL: `https://github.com` for `api.github.com`, else
/// the API URL's scheme, host and port (GitHub Enterprise serves both on one host).
pub fn github_web_base(api_url: &str) -> String {
    let api = api_url.trim().trim_end_matches('/');
    if api.eq_ignore_ascii_case("https://api.github.com") {
        return "https://github.com".to_string();
    }
    match api.find("://") {
        Some(i) => {
            let rest = &api[i + 3..];
            let end = rest.find('/').unwrap_or(rest.len());
            format!("{}://{}", &api[..i], &rest[..end])
        }
        None => api.to_string(),
    }
}

/// Loads app.json from `path`; `None` when it is the default path, nothing named it,
/// and it does not exist: faseng then runs without one.
pub fn load_apps(path: &Path) -> anyhow::Result<Option<Arc<Apps>>> {
    let explicit = std::env::var_os("APPS_JSON").is_some() || path != Path::new("config/app.json");
    if !path.exists() && !explicit {
        tracing::warn!(path = %path.display(), "no app.json; only deployments that carry payload.config can run");
        return Ok(None);
    }
    let apps = Apps::load(path).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(Some(Arc::new(apps)))
}

fn engine_config(args: &Args, apps: Option<Arc<Apps>>) -> anyhow::Result<EngineConfig> {
    let apps_dir = args
        .deploy
        .apps
        .canonicalize()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| Path::new(".").to_path_buf());
    let mut cfg = EngineConfig::new(apps, &apps_dir);
    cfg.workers = args.workers.max(1);
    if let Some(dir) = &args.workdir {
        cfg.workdir = dir.clone();
    }
    if !args.mirror_max_gb.is_finite() || args.mirror_max_gb < 0.0 {
        anyhow::bail!(
            "FASENG_MIRROR_MAX_GB must be a size in GB, 0 or more (it is {})",
            args.mirror_max_gb
        );
    }
    cfg.mirror_max_bytes = (args.mirror_max_gb * 1e9) as u64;
    cfg.lease = args.deploy.lease();
    cfg.priority = chima_engine::priority::Priority {
        nice: args.provider_nice,
        io: args.provider_io,
    };
    cfg.worker_nice = args.worker_nice.min(args.provider_nice);
    if cfg.worker_nice < args.worker_nice {
        tracing::warn!(
            worker_nice = args.worker_nice,
            provider_nice = args.provider_nice,
            "FASENG_WORKER_NICE is above FASENG_PROVIDER_NICE: the workers run at the providers' niceness, never below them"
        );
    }
    cfg.guard = Some(
        chima_engine::GuardProgram::this_binary()
            .context("cannot find faseng's own binary to run providers under its guard")?,
    );
    if let Some(spec) = args.run_as.as_deref().filter(|s| !s.is_empty()) {
        let who = chima_engine::runas::RunAs::lookup(spec)?;
        tracing::info!(user = %who.name, uid = who.uid, "providers run as another user (FASENG_RUN_AS)");
        cfg.run_as = Some(who);
    }
    if args.workers > 0 || matches!(args.command, Some(Command::Worker)) {
        chima_engine::workdir::prepare(&cfg.workdir).with_context(|| {
            format!(
                "the work folder {} cannot be used (FASENG_WORKDIR)",
                cfg.workdir.display()
            )
        })?;
    }
    cfg.github_api_url = args.github.github_api_url.clone();
    cfg.clone_base = args
        .clone_base
        .clone()
        .filter(|b| !b.is_empty())
        .unwrap_or_else(|| github_web_base(&args.github.github_api_url));
    if let Some(key) = &args.heroku_api_key {
        cfg.secrets.push(key.clone());
        cfg.heroku = Some(chima_engine::providers::heroku::HerokuApi {
            base_url: args.heroku_api_url.clone(),
            api_key: Secret::new(key.clone()),
        });
    }
    cfg.secrets.extend(args.webhook_secret.iter().cloned());
    cfg.secrets
        .extend(args.keys.faseng_api_token.iter().cloned());
    cfg.secrets
        .extend(args.keys.chima_signing_key.iter().cloned());
    cfg.secrets.extend(args.metrics_token.iter().cloned());
    // A private key is many lines: each line of its body is hidden wherever it shows.
    if let Some(pem) = &args.github.github_app_private_key {
        cfg.secrets.extend(
            pem.lines()
                .map(str::trim)
                .filter(|l| !l.starts_with("-----") && l.len() >= 16)
                .map(str::to_string),
        );
    }
    Ok(cfg)
}

#[allow(clippy::too_many_arguments)]
async fn serve_http(
    args: &Args,
    store: Arc<dyn Store>,
    apps: Option<Arc<Apps>>,
    links: LinkSigner,
    public_url: String,
    engine_metrics: Option<Arc<chima_engine::metrics::EngineMetrics>>,
    metrics: Arc<crate::metrics::Metrics>,
    autodeploy: Option<crate::autodeploy::AutoDeployer>,
) -> anyhow::Result<()> {
    let listener = match inherited_listener()? {
        Some(l) => l,
        None => tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("cannot listen on {} (FASENG_LISTEN)", args.listen))?,
    };
    let local = listener.local_addr()?;
    let state = AppState {
        store,
        apps,
        links,
        public_url: public_url.clone(),
        webhook_secret: args.webhook_secret.clone().map(Secret::new),
        api_token: args
            .keys
            .faseng_api_token
            .clone()
            .filter(|t| !t.is_empty())
            .map(Secret::new),
        signing_key: signing_key(args),
        metrics_token: args.metrics_token.clone().map(Secret::new),
        metrics,
        engine_metrics,
        autodeploy,
        slack_api_url: args.slack.slack_api_url.clone(),
        bounds: web::bounds::Bounds::new(args.max_streams, args.max_page_loads),
    };
    tracing::info!(%local, %public_url, index = %state.links.index_url(&public_url), "faseng listening");
    axum::serve(listener, web::router(state))
        .with_graceful_shutdown(chima_settings::shutdown_signal())
        .await
        .context("the web server stopped")
}

/// Resolves on SIGTERM or Ctrl-C.
/// A listening socket handed over at fd 3, as systemd's socket activation does
/// (`LISTEN_FDS=1`, and `LISTEN_PID` naming this process when set): the socket is
/// bound before faseng starts, so nothing can take its port meanwhile (a
/// `faseng.socket` unit, or a test that binds first). `None` without one.
fn inherited_listener() -> anyhow::Result<Option<tokio::net::TcpListener>> {
    const FIRST_FD: i32 = 3;
    if std::env::var("LISTEN_FDS").ok().as_deref() != Some("1") {
        return Ok(None);
    }
    if let Ok(pid) = std::env::var("LISTEN_PID")
        && pid.trim() != std::process::id().to_string()
    {
        return Ok(None); // meant for another process
    }
    // SAFETY: the fd was handed to this process to own (LISTEN_FDS); it is taken once.
    #[allow(unsafe_code)]
    let std_listener =
        unsafe { <std::net::TcpListener as std::os::fd::FromRawFd>::from_raw_fd(FIRST_FD) };
    std_listener
        .set_nonblocking(true)
        .context("the socket at fd 3 (LISTEN_FDS) is not a listening TCP socket")?;
    let listener = tokio::net::TcpListener::from_std(std_listener)
        .context("the socket at fd 3 (LISTEN_FDS) is not a listening TCP socket")?;
    tracing::info!("listening on the socket handed over at fd 3 (LISTEN_FDS)");
    Ok(Some(listener))
}
