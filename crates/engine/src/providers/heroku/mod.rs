//! `heroku`: builds through the Heroku Platform API (see "Providers" in ARCHITECTURE.md).
//!
//! Heroku fetches the source itself (the tarball URL of the commit), so there
//! is no checkout and no process: the runner creates a build, streams its
//! output into the log as it comes, and polls the build until it is over.
//! Unlike heaven, the output is live, a flaky API is retried, and errors say
//! what to fix without ever showing the API key.
//!
//! The calls follow Heroku's "Build and release using the API"
//! (<https://devcenter.heroku.com/articles/build-and-release-using-the-api>)
//! and the Build resource of the Platform API reference
//! (<https://devcenter.heroku.com/articles/platform-api-reference#build-create>):
//! `POST /apps/{app}/builds` with a `source_blob.url`, then the build's
//! `output_stream_url` for the output and `GET /apps/{app}/builds/{id}` for
//! the status. The reference asks clients of the output stream to "be prepared
//! to handle disconnects" and to resume with a `Range` header: a stream that
//! breaks off is resumed from the byte where it broke, and while it is down
//! the status is polled with a backoff, so that a dead stream does not spend
//! the account's API rate limit (4500 requests an hour) on a long build.
//!
//! The runner is split along its seams: this file holds the plan and the
//! build flow (create, stream while polling, report how it ended, stop
//! watching on a deadline or a cancel); `platform` the Platform API calls
//! with their retries; `stream` the output stream and its resumption; and
//! `http` the HTTP client and the helpers that keep answers bounded,
//! printable and free of the key.

mod http;
mod platform;
mod stream;

use std::sync::OnceLock;
use std::time::Duration;

use chima_store::Stream;
use tokio::sync::watch;
use tokio::time::Instant;

use super::{Job, Plan};
use crate::process::{Exit, LineSender, cancelled};
use http::{printable, scrub};
use platform::Platform;

/// A Heroku build to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HerokuPlan {
    /// The Heroku app (`heroku_<env>_name`, else `heroku_name`).
    pub app_name: String,
    /// The tarball of the commit, which Heroku fetches itself.
    pub source_url: String,
    /// The commit, as the build's `version`.
    pub version: String,
}

/// Why a dry run (`deploy:noop`) of a Heroku app is refused: a build releases when it
/// succeeds, and the Platform API has no build that does not. chima says it before
/// creating anything; the engine says it for one that arrives from GitHub or the API.
pub const NO_DRY_RUN: &str = "Heroku builds have no dry run; nothing was run";

/// Plans a Heroku build of the commit from `source_url` (its tarball); refuses an app
/// with no Heroku app for the environment, and a dry run ([`NO_DRY_RUN`]).
pub fn plan(job: Job<'_>, source_url: String) -> Result<Plan, String> {
    if job.dry_run() {
        return Err(NO_DRY_RUN.to_string());
    }
    let env = &job.deployment.environment;
    let app_name = job
        .app
        .heroku_env_names
        .get(env)
        .or(job.app.heroku_name.as_ref())
        .cloned()
        .ok_or_else(|| {
            format!("the app has no Heroku app for {env}: set `heroku_{env}_name` or `heroku_name` in app.json")
        })?;
    Ok(Plan::Heroku(HerokuPlan {
        app_name,
        source_url,
        version: job.sha.to_string(),
    }))
}

/// Heroku's Platform API, unless `HEROKU_API_URL` says otherwise.
pub const DEFAULT_API_URL: &str = "https://api.heroku.com";

/// The largest JSON answer read from the API. A build object is a few KiB;
/// anything far bigger is a proxy's error page or a broken server, and must
/// not be buffered without bound.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Requests that fail in a way worth retrying (network, 429, 5xx) are tried
/// this many times in all.
const ATTEMPTS: u32 = 3;
const ATTEMPTS_WORD: &str = "three";

/// Version 3 of the Platform API; without it Heroku answers 400.
const ACCEPT_V3: &str = "application/vnd.heroku+json; version=3";

/// Where and how to reach the Platform API.
#[derive(Debug, Clone)]
pub struct HerokuApi {
    /// `HEROKU_API_URL` ([`DEFAULT_API_URL`] by default); tests point it at a
    /// fake on 127.0.0.1.
    pub base_url: String,
    /// `HEROKU_API_KEY`. Sent only to `base_url`, never to the output stream
    /// (another host), and never written to the log or an error.
    pub api_key: chima_config::Secret,
}

/// How often and how long the runner waits. [`Timing::default`] is what
/// faseng uses; tests shorten it.
#[derive(Debug, Clone)]
pub struct Timing {
    /// The first wait between status polls once the output stream has ended
    /// or failed. It doubles after each poll that finds the build still
    /// pending, up to [`Timing::poll_cap`], and starts again from here when
    /// the stream delivers output again. The same backoff spaces the attempts
    /// to resume a broken stream.
    pub poll: Duration,
    /// The longest wait between status polls (and stream resumptions) while
    /// the stream is down: without a cap a long build would be noticed late,
    /// without the backoff a dead stream would poll twice a second for the
    /// whole build.
    pub poll_cap: Duration,
    /// Between status polls while the output is still streaming: only a
    /// safety net for a stream that stalls, so slow, to spare the account's
    /// API rate limit (4500 requests an hour) during long builds.
    pub poll_while_streaming: Duration,
    /// The first wait before a retry; doubled for each further retry, unless
    /// the server sends `Retry-After`.
    pub retry_base: Duration,
    /// The longest wait before a retry. A `Retry-After` longer than this ends
    /// the attempts with an error instead of holding a worker.
    pub max_retry_wait: Duration,
    /// How long one API request may take, body included.
    pub request_timeout: Duration,
    /// Once the build has finished, how long the output stream may still
    /// deliver its last lines before it is dropped.
    pub stream_drain: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            poll: Duration::from_millis(500),
            poll_cap: Duration::from_secs(10),
            poll_while_streaming: Duration::from_secs(15),
            retry_base: Duration::from_secs(1),
            max_retry_wait: Duration::from_secs(60),
            request_timeout: Duration::from_secs(30),
            stream_drain: Duration::from_secs(10),
        }
    }
}

/// Builds `plan` on Heroku: creates the build, streams its output to `lines`
/// (stdout) as it comes, and polls its status until it succeeds (exit 0) or
/// fails (exit 1).
///
/// A deadline or a cancel stops the watching, not the build: the Platform API
/// has no way to stop a build, so the log says that it may still finish.
/// `Err` is a reason fit for the deployment's `errored` status; it never holds
/// the API key.
pub async fn run(
    plan: &HerokuPlan,
    api: &HerokuApi,
    lines: LineSender,
    cancel: watch::Receiver<Option<String>>,
    deadline: Instant,
) -> Result<Exit, String> {
    run_with(plan, api, &Timing::default(), lines, cancel, deadline).await
}

/// [`run`] with explicit [`Timing`].
pub async fn run_with(
    plan: &HerokuPlan,
    api: &HerokuApi,
    timing: &Timing,
    lines: LineSender,
    mut cancel: watch::Receiver<Option<String>>,
    deadline: Instant,
) -> Result<Exit, String> {
    let key = api.api_key.expose();
    let build_id = OnceLock::new();
    let stop = tokio::select! {
        biased;
        by = cancelled(&mut cancel) => Stop::Cancelled(by),
        () = tokio::time::sleep_until(deadline) => Stop::TimedOut,
        result = build(plan, api, timing, &lines, &build_id) => Stop::Done(result),
    };
    let (exit, reason) = match stop {
        Stop::Done(result) => return result.map_err(|e| scrub(&e, key)),
        Stop::TimedOut => (Exit::TimedOut, "the deadline passed".to_string()),
        Stop::Cancelled(by) => {
            let reason = format!("cancelled by {by}");
            (Exit::Cancelled(by), reason)
        }
    };
    let app = &plan.app_name;
    let line = match build_id.get() {
        Some(id) => format!(
            "{reason}: stopped watching Heroku build {id}. Heroku builds cannot be stopped, \
             so it may still finish and release; see `heroku builds:info {id} --app {app}`"
        ),
        None => format!(
            "{reason} before Heroku confirmed the build: it may or may not have started; \
             see `heroku builds --app {app}`"
        ),
    };
    note(&lines, line).await;
    Ok(exit)
}

enum Stop {
    Done(Result<Exit, String>),
    TimedOut,
    Cancelled(String),
}

/// How a build ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Succeeded,
    Failed,
}

/// What the output stream is doing, as the status polls see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Output {
    /// Connecting, or delivering output: the status is polled only as a slow
    /// safety net ([`Timing::poll_while_streaming`]).
    Streaming,
    /// The stream ended: the build is over, or about to be. The status is
    /// polled at once, then with the backoff.
    Ended,
    /// The stream broke off or cannot be opened: the status is polled with
    /// the backoff until the stream delivers output again.
    Down,
}

/// Sets the stream's state, waking the polls only on a real change: a stream
/// that fails again and again must not restart the polls' wait each time.
fn set_output(tx: &watch::Sender<Output>, now: Output) {
    tx.send_if_modified(|was| {
        let changed = *was != now;
        *was = now;
        changed
    });
}

/// The current wait of a backoff, which then doubles up to `cap`.
fn step(backoff: &mut Duration, cap: Duration) -> Duration {
    let wait = *backoff;
    *backoff = backoff.saturating_mul(2).min(cap);
    wait
}

/// The fields of Heroku's Build object that the runner uses.
struct Build {
    id: String,
    output_stream_url: Option<String>,
}

/// Create, stream, poll: the whole build, without deadline or cancel.
async fn build(
    plan: &HerokuPlan,
    api: &HerokuApi,
    timing: &Timing,
    lines: &LineSender,
    build_id: &OnceLock<String>,
) -> Result<Exit, String> {
    check_name("app name", &plan.app_name)?;
    let platform = Platform::new(api, timing, lines)?;
    let created = platform.create(plan).await?;
    let _ = build_id.set(created.id.clone());
    note(
        lines,
        format!("Heroku build {} created; streaming its output", created.id),
    )
    .await;

    // The output is read while the status is polled (slowly): a stream that
    // stalls must not hold the deployment until its deadline once Heroku
    // says the build is over.
    let (output_tx, output_rx) = watch::channel(Output::Streaming);
    let streaming = platform.stream(created.output_stream_url.as_deref(), &output_tx);
    let polling = platform.poll(&plan.app_name, &created.id, output_rx.clone());
    tokio::pin!(streaming, polling);
    let mut streamed = false;
    let status = loop {
        tokio::select! {
            () = &mut streaming, if !streamed => streamed = true,
            status = &mut polling => break status?,
        }
    };
    if !streamed {
        let output = *output_rx.borrow();
        if output == Output::Down {
            // Waiting for a stream that is down would only delay the result.
            note(
                lines,
                format!(
                    "the Heroku build is over but its output stream is down: the output above \
                     may be incomplete; the whole log is on the Activity tab of app `{}` in the \
                     Heroku Dashboard",
                    plan.app_name
                ),
            )
            .await;
        } else if tokio::time::timeout(timing.stream_drain, &mut streaming)
            .await
            .is_err()
        {
            note(
                lines,
                "the Heroku build is over but its output stream is still open: stopped reading it",
            )
            .await;
        }
    }
    Ok(match status {
        Status::Succeeded => {
            note(lines, format!("Heroku build {} succeeded", created.id)).await;
            Exit::Exited(Some(0))
        }
        Status::Failed => {
            note(lines, format!("Heroku build {} failed", created.id)).await;
            Exit::Exited(Some(1))
        }
    })
}

/// Names that go into URL paths: an app name (or id) and a build id. Anything
/// else could change the path (`../`) or the query.
fn check_name(what: &str, name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 100
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "Heroku {what} `{}` is not valid: only letters, digits, `-` and `_` are allowed",
            printable(name, 100)
        ))
    }
}

/// A line from faseng itself, on stderr like the engine's other notes.
async fn note(lines: &LineSender, line: impl Into<String>) {
    let _ = lines.send((Stream::Stderr, line.into())).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_poll_backoff_goes_from_half_a_second_to_ten() {
        let timing = Timing::default();
        let mut backoff = timing.poll;
        let waits: Vec<u128> = (0..8)
            .map(|_| step(&mut backoff, timing.poll_cap).as_millis())
            .collect();
        assert_eq!(waits, [500, 1000, 2000, 4000, 8000, 10_000, 10_000, 10_000]);
        // A 20 s build with a dead stream: 6 polls instead of 40.
        let mut backoff = timing.poll;
        let mut at = Duration::ZERO;
        let mut polls = 0;
        while at < Duration::from_secs(20) {
            at += step(&mut backoff, timing.poll_cap);
            polls += 1;
        }
        assert_eq!(polls, 6);
    }

    #[test]
    fn names_that_would_change_the_path_are_refused() {
        assert!(check_name("app name", "my-app-staging").is_ok());
        assert!(check_name("app name", "01234567-89ab-cdef-0123-456789abcdef").is_ok());
        for bad in ["", "../account", "a/b", "a?b", "a b", "a.b"] {
            assert!(check_name("app name", bad).is_err(), "{bad}");
        }
    }
}
