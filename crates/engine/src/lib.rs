//! The deploy engine: a pool of workers that claim deployments from the store
//! and run them. The same engine runs in faseng and, in-process, in chima's
//! embedded mode: there is no separate demo path.

#![warn(missing_docs)]

mod admission;
pub mod approval;
mod checkout;
mod control;
pub mod hygiene;
mod jobtree;
mod lease;
mod logsink;
mod lowfs;
pub mod metrics;
pub mod ops;
pub mod policy;
pub mod process;
pub mod providers;
mod redact;
pub mod runas;
mod spawn;
pub mod workdir;
mod worker;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chima_config::Apps;
use chima_store::Store;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use checkout::{Checkout, Mirrors, Pins, Source, checkout, redact_url, token_allowed};
/// The guard between faseng and each provider (its own crate and binary).
pub use chima_guard as guard;
/// How far below faseng git and providers run.
pub use chima_guard::priority;
pub use redact::Redactor;

/// The lease default: a database outage of up to 48 s does not fence running
/// deploys (renewals every 6 s; the guard's deadline comes 6 s before it lapses).
pub const DEFAULT_LEASE: Duration = Duration::from_secs(60);

/// How much the repository mirrors may take together by default, in GB.
pub const DEFAULT_MIRROR_MAX_GB: u64 = 20;

/// The program a guard is: the guard's own binary, or a binary that calls
/// [`guard::main_if_guard`] first.
#[derive(Debug, Clone)]
pub struct GuardProgram {
    /// The binary to run.
    pub program: PathBuf,
    /// Its arguments before the guard's own (`["guard"]` for a re-exec, none
    /// for the guard's binary).
    pub prefix: Vec<String>,
}

impl GuardProgram {
    /// The guard's own binary ([`guard::BINARY`]) when it is installed next to
    /// this one (the Debian package, `cargo build -p faseng`), else this very
    /// binary, re-executed as `<binary> guard ...` (`cargo run --bin chima`
    /// builds chima alone). Both run the same code; the small binary starts in
    /// a fraction of the time.
    pub fn this_binary() -> std::io::Result<GuardProgram> {
        let me = std::env::current_exe()?;
        if let Some(beside) = me.parent().map(|dir| dir.join(guard::BINARY))
            && spawn::is_executable(&beside)
        {
            return Ok(GuardProgram {
                program: beside,
                prefix: Vec::new(),
            });
        }
        Ok(GuardProgram {
            program: me,
            prefix: vec![guard::SUBCOMMAND.to_string()],
        })
    }
}

/// How the engine runs. Build one with [`EngineConfig::new`] and adjust.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Concurrent deployments in this process (`FASENG_WORKERS`).
    pub workers: usize,
    /// Where per-job checkouts go (`FASENG_WORKDIR`).
    pub workdir: PathBuf,
    /// This process's own app.json: the only source of what a deployment runs.
    pub apps: AppsHandle,
    /// Relative `clone_url`s are taken from here (the folder of app.json).
    pub apps_dir: PathBuf,
    /// For apps without `timeout` (30 minutes).
    pub default_timeout: Duration,
    /// How long a claim holds without renewal (`FASENG_LEASE_SECS`, 60 s); a dead
    /// worker's deployment is declared lost after this. Renewed every tenth of it;
    /// providers are fenced a tenth of it before it can lapse.
    pub lease: Duration,
    /// The guard providers run under (faseng's own binary, `guard`): it stops a
    /// provider whose lease can no longer be trusted, even when faseng is frozen or
    /// dead. `None` runs providers as direct children (the engine's unit tests).
    pub guard: Option<GuardProgram>,
    /// Where repositories without `clone_url` are cloned from.
    pub clone_base: String,
    /// Credentials and download links from the code host (GitHub), if any.
    pub access: Option<Arc<dyn SourceAccess>>,
    /// Heroku Platform API access, when configured.
    pub heroku: Option<providers::heroku::HerokuApi>,
    /// Base URL for the source tarballs Heroku fetches.
    pub github_api_url: String,
    /// Values to redact from logs (tokens and keys in use).
    pub secrets: Vec<String>,
    /// `PATH` given to providers.
    pub path: String,
    /// Names this process in worker ids.
    pub instance: String,
    /// Run providers as this user (`FASENG_RUN_AS`, faseng being root).
    pub run_as: Option<runas::RunAs>,
    /// How far below faseng providers and git run (`FASENG_PROVIDER_NICE`,
    /// `FASENG_PROVIDER_IO`).
    pub priority: priority::Priority,
    /// The niceness of the workers' own work (`FASENG_WORKER_NICE`): claims, lease
    /// renewals, log handling and the guards. Above 0, the workers run on threads
    /// of their own at that niceness, between the web tier (faseng's own) and the
    /// providers; 0 runs them on the caller's runtime (chima's embedded default).
    pub worker_nice: u8,
    /// Variables of faseng's environment every provider also gets: `SSH_AUTH_SOCK`
    /// when faseng has one, so that keys held by an ssh-agent work.
    pub passthrough_env: Vec<(String, String)>,
    /// The major version of the `fab` on `path`, asked once (`fab --version`).
    pub fabric_major: Arc<tokio::sync::OnceCell<Result<u8, String>>>,
    /// Histograms this engine fills (read by `/metrics`).
    pub metrics: Arc<metrics::EngineMetrics>,
    /// The most the repository mirrors (`<workdir>/mirrors`) may take together, in
    /// bytes (`FASENG_MIRROR_MAX_GB`, 20 GB): beyond it, the least recently used
    /// mirrors no running job needs are removed after a fetch.
    pub mirror_max_bytes: u64,
    /// The mirror pins of the jobs this engine runs (ARCHITECTURE.md, "Mirrors").
    pub pins: Pins,
}

impl EngineConfig {
    /// The defaults (4 workers, a 60 s lease, a 30-minute timeout, GitHub's public hosts, no
    /// guard): `apps` (`None` when there is no app.json yet) and the folder it was read from.
    pub fn new(apps: Option<Arc<Apps>>, apps_dir: &Path) -> Self {
        EngineConfig {
            workers: 4,
            workdir: workdir::default_workdir(),
            apps: AppsHandle::new(apps),
            apps_dir: apps_dir.to_path_buf(),
            default_timeout: Duration::from_secs(30 * 60),
            lease: DEFAULT_LEASE,
            guard: None,
            clone_base: "https://github.com".to_string(),
            access: None,
            heroku: None,
            github_api_url: "https://api.github.com".to_string(),
            secrets: Vec::new(),
            path: std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into()),
            instance: std::env::var("HOSTNAME").unwrap_or_else(|_| "faseng".to_string()),
            metrics: Arc::default(),
            run_as: None,
            priority: priority::Priority::default(),
            worker_nice: 0,
            passthrough_env: std::env::var("SSH_AUTH_SOCK")
                .ok()
                .filter(|s| !s.is_empty())
                .map(|s| vec![("SSH_AUTH_SOCK".to_string(), s)])
                .unwrap_or_default(),
            fabric_major: Arc::default(),
            mirror_max_bytes: DEFAULT_MIRROR_MAX_GB * 1_000_000_000,
            pins: Pins::default(),
        }
    }

    /// The repository mirrors of this engine's work folder.
    pub fn mirrors(&self) -> Mirrors {
        Mirrors {
            root: self.workdir.join("mirrors"),
            max_bytes: self.mirror_max_bytes,
            reader_gid: self.run_as.as_ref().map(|who| who.gid),
            pins: self.pins.clone(),
        }
    }

    /// The environment every provider starts from: nothing of faseng's own
    /// (no tokens, no database URL), only what programs need to run.
    fn base_env(&self, checkout: &Path) -> Vec<(String, String)> {
        let home = match &self.run_as {
            Some(who) => who.home.to_string_lossy().into_owned(),
            None => {
                std::env::var("HOME").unwrap_or_else(|_| checkout.to_string_lossy().into_owned())
            }
        };
        vec![
            ("PATH".to_string(), self.path.clone()),
            ("HOME".to_string(), home),
            ("LANG".to_string(), "C.UTF-8".to_string()),
        ]
    }

    /// Where Heroku downloads the commit from (the build's `source_blob.url`,
    /// <https://devcenter.heroku.com/articles/platform-api-reference#build-create>).
    ///
    /// With GitHub credentials, the code host's short-lived link: it works for
    /// private repositories. Without, the web host's source archive,
    /// `{clone_base}/{repository}/archive/{sha}.tar.gz`
    /// (<https://docs.github.com/en/repositories/working-with-files/using-files/downloading-source-code-archives>):
    /// Heroku fetches it anonymously from its shared build hosts, and the
    /// API's tarball endpoint
    /// (<https://docs.github.com/en/rest/repos/contents#download-a-repository-archive-tar>)
    /// would count against the 60 requests an hour GitHub allows
    /// unauthenticated callers, so builds would fail with 403 at random.
    /// `clone_base` is that web host (`https://github.com`, or the GitHub
    /// Enterprise host) unless FASENG_CLONE_BASE says otherwise; when it is not
    /// an https URL (a local path, a mirror over ssh), only the API link is
    /// known to exist, as before.
    async fn heroku_source_url(&self, repository: &str, sha: &str) -> Result<String, String> {
        if let Some(access) = &self.access {
            return access.tarball_url(repository, sha).await;
        }
        let web = self.clone_base.trim().trim_end_matches('/');
        let https = web
            .get(..8)
            .is_some_and(|scheme| scheme.eq_ignore_ascii_case("https://"))
            && web.len() > 8;
        let url = if https {
            format!("{web}/{repository}/archive/{sha}.tar.gz")
        } else {
            format!(
                "{}/repos/{repository}/tarball/{sha}",
                self.github_api_url.trim_end_matches('/')
            )
        };
        tracing::debug!(%url, "Heroku fetches the source without GitHub credentials");
        Ok(url)
    }
}

/// The app.json the engine runs deployments by. A handle rather than a value, so that
/// a new app.json can take effect without a restart: a deployment reads the apps once,
/// when it starts.
#[derive(Debug, Clone, Default)]
pub struct AppsHandle(Arc<std::sync::RwLock<Option<Arc<Apps>>>>);

impl AppsHandle {
    /// A handle on `apps`.
    pub fn new(apps: Option<Arc<Apps>>) -> AppsHandle {
        AppsHandle(Arc::new(std::sync::RwLock::new(apps)))
    }

    /// The apps in force now.
    pub fn current(&self) -> Option<Arc<Apps>> {
        match self.0.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Puts `apps` in force for deployments that start from now on.
    pub fn replace(&self, apps: Option<Arc<Apps>>) {
        match self.0.write() {
            Ok(mut guard) => *guard = apps,
            Err(poisoned) => *poisoned.into_inner() = apps,
        }
    }
}

/// What the engine needs from the code host: credentials for cloning and a
/// download link for Heroku. faseng implements it with its GitHub client.
#[async_trait::async_trait]
pub trait SourceAccess: Send + Sync + std::fmt::Debug {
    /// An HTTP `Authorization` header value for cloning `repository`, if any.
    async fn clone_auth(&self, repository: &str) -> Result<Option<String>, String>;
    /// A URL Heroku can fetch the tarball of `sha` from.
    async fn tarball_url(&self, repository: &str, sha: &str) -> Result<String, String>;
}

/// Runs the restart sweep until it succeeds (the database may be away at start),
/// then lets the workers claim.
async fn sweep_first(store: Arc<dyn Store>, cfg: Arc<EngineConfig>, done: watch::Sender<bool>) {
    loop {
        match hygiene::sweep(&store, &cfg).await {
            Ok(s) => {
                if s != hygiene::Swept::default() {
                    tracing::warn!(ended = ?s.ended, guards_killed = s.guards_killed, removed = s.removed,
                        "cleaned up after a faseng that died on this host");
                }
                break;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot check for leftovers of a dead faseng yet; retrying");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
    }
    let _ = done.send(true);
}

/// A running worker pool.
pub struct Engine {
    shutdown: watch::Sender<bool>,
    abort: watch::Sender<bool>,
    workers: Vec<JoinHandle<()>>,
    /// The workers' own runtime, when they run below the caller (`worker_nice`).
    _runtime: control::WorkerRuntime,
}

impl Engine {
    /// Starts `cfg.workers` workers on `store`: on threads of their own at
    /// `cfg.worker_nice` when it is above 0 (and such threads can be made),
    /// otherwise on the caller's runtime.
    pub fn start(store: Arc<dyn Store>, cfg: EngineConfig) -> Engine {
        let runtime = control::WorkerRuntime::new(cfg.worker_nice);
        let on = runtime.handle();
        let cfg = Arc::new(cfg);
        let (shutdown, rx) = watch::channel(false);
        let (abort, abort_rx) = watch::channel(false);
        // Nothing is claimed before what a dead predecessor left is gone.
        let (swept_tx, swept) = watch::channel(false);
        on.spawn(sweep_first(store.clone(), cfg.clone(), swept_tx));
        let workers = (0..cfg.workers.max(1))
            .map(|n| {
                on.spawn(worker::supervise(
                    n,
                    store.clone(),
                    cfg.clone(),
                    rx.clone(),
                    abort_rx.clone(),
                    swept.clone(),
                ))
            })
            .collect();
        Engine {
            shutdown,
            abort,
            workers,
            _runtime: runtime,
        }
    }

    /// Stops claiming and waits for running deployments to finish.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for w in self.workers {
            let _ = w.await;
        }
    }

    /// Stops claiming, lets running deployments finish for up to `grace`, then
    /// cancels those still running (their process groups are killed and they
    /// end `cancelled` with the reason), and waits for them to be recorded.
    pub async fn shutdown_within(self, grace: Duration) {
        let _ = self.shutdown.send(true);
        let deadline = tokio::time::Instant::now() + grace;
        let mut rest = Vec::new();
        for mut w in self.workers {
            if tokio::time::timeout_at(deadline, &mut w).await.is_err() {
                rest.push(w);
            }
        }
        if !rest.is_empty() {
            tracing::warn!(
                running = rest.len(),
                "grace period over: cancelling running deployments"
            );
            let _ = self.abort.send(true);
            for w in rest {
                let _ = w.await;
            }
        }
    }
}
