//! A job's tree: the credentials for its repository, its checkout from the
//! repository's mirror (`checkout/`), and what that took, in the job's log
//! (`==> checked out ... in 0.4 s`) and in `/metrics`.

use std::time::Duration;

use chima_config::App;
use chima_store::{Deployment, Outcome};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::EngineConfig;
use crate::admission::source_for;
use crate::checkout;
use crate::logsink::LogSink;
use crate::worker::{ensure_workdir, human};

/// What the checkout step of one job works with.
pub(crate) struct Step<'a> {
    pub(crate) cfg: &'a EngineConfig,
    pub(crate) app: &'a App,
    pub(crate) d: &'a Deployment,
    pub(crate) log: &'a LogSink,
    /// The job's folder, made here.
    pub(crate) dir: &'a std::path::Path,
}

impl Step<'_> {
    /// Checks out the deployment's commit into the job's folder and returns
    /// it; the deployment's outcome when it cannot. The job's deadline and a
    /// cancel hold during the checkout too: a fetch that hangs is stopped
    /// (its git killed, the mirror's lock released) rather than holding every
    /// other job of the repository.
    pub(crate) async fn run(
        &self,
        deadline: Instant,
        timeout: Duration,
        mut cancel: watch::Receiver<Option<String>>,
    ) -> Result<String, Outcome> {
        let (cfg, d, log) = (self.cfg, self.d, self.log);
        let mut source = source_for(cfg, self.app, d);
        // The token goes only to the GitHub it belongs to: never to another host or
        // port named by a clone_url.
        if let Some(access) = &cfg.access
            && checkout::token_allowed(&source.url, &cfg.github_api_url)
        {
            match access.clone_auth(&d.repository).await {
                Ok(header) => source.auth_header = header,
                Err(why) => {
                    return Err(Outcome::errored(format!(
                        "cannot get credentials to clone {}: {why}",
                        d.repository
                    )));
                }
            }
        }
        log.note(format!(
            "==> checking out {} {}",
            d.git_ref,
            d.sha.as_deref().unwrap_or("")
        ))
        .await;
        if let Err(e) = ensure_workdir(cfg) {
            return Err(Outcome::errored(format!("cannot use the work folder: {e}")));
        }
        let mut notes = Vec::new();
        let mirrors = cfg.mirrors();
        let checking =
            mirrors.checkout(&source, &d.git_ref, d.sha.as_deref(), self.dir, &mut notes);
        let cancelled = async {
            let by = cancel
                .wait_for(Option::is_some)
                .await
                .ok()
                .map(|by| by.clone().unwrap_or_default());
            match by {
                Some(by) => by,
                // No one can cancel any more: only the deadline ends the checkout.
                None => std::future::pending().await,
            }
        };
        let checked = tokio::select! {
            c = tokio::time::timeout_at(deadline, checking) => c,
            by = cancelled => {
                return Err(Outcome::cancelled(None, format!("cancelled by {by} during the checkout")));
            }
        };
        for note in notes {
            log.note(note).await;
        }
        let Ok(checked) = checked else {
            return Err(Outcome::failed(
                None,
                format!("timed out after {} during the checkout", human(timeout)),
            ));
        };
        match checked {
            Ok(c) => {
                if let Some(f) = c.fetched {
                    cfg.metrics.fetch.observe(f.as_secs_f64());
                }
                cfg.metrics.checkout.observe(c.tree.as_secs_f64());
                log.note(format!(
                    "==> checked out {} in {:.1} s ({})",
                    c.sha.get(..12).unwrap_or(&c.sha),
                    c.tree.as_secs_f64(),
                    match c.fetched {
                        Some(f) => format!("fetched in {:.1} s", f.as_secs_f64()),
                        None => "already in the mirror, nothing fetched".to_string(),
                    }
                ))
                .await;
                Ok(c.sha)
            }
            Err(why) => Err(Outcome::errored(format!("checkout failed: {why}"))),
        }
    }
}
