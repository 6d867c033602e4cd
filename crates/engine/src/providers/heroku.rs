//! `heroku`: builds through the Heroku Platform API (DESIGN.md section 5).
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

use std::sync::OnceLock;
use std::time::Duration;

use chima_store::Stream;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body as _, Bytes, Incoming};
use hyper::header::{
    ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderValue, RANGE, RETRY_AFTER, USER_AGENT,
};
use hyper::{Method, Request, Response, StatusCode, Uri};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use tokio::sync::watch;
use tokio::time::Instant;

use super::{Job, Plan};
use crate::process::{Exit, LineSender, MAX_LINE_BYTES};

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

pub fn plan(job: Job<'_>, source_url: String) -> Result<Plan, String> {
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

/// Resolves when the watch carries a name; never when nobody can cancel.
async fn cancelled(cancel: &mut watch::Receiver<Option<String>>) -> String {
    loop {
        if let Some(by) = cancel.borrow_and_update().clone() {
            return by;
        }
        if cancel.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
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

/// How a request for the output stream went.
enum Opened {
    /// 2xx: the output, whose first `skip` bytes were already read (a server
    /// that ignored the `Range` header sends it all again).
    Body {
        response: Response<Incoming>,
        skip: u64,
    },
    /// 416 to a `Range` past what was read: there is no more output.
    Complete,
    /// No stream this time.
    Failed {
        why: String,
        retry_after: Option<Duration>,
        retryable: bool,
    },
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

/// The Platform API as the runner uses it: one client, one key, retries.
struct Platform<'a> {
    http: Http,
    base: &'a str,
    auth: HeaderValue,
    /// Only to scrub it from log lines that quote a server's answer.
    key: &'a str,
    timing: &'a Timing,
    lines: &'a LineSender,
}

/// A whole (bounded) answer of the API.
struct Answer {
    status: StatusCode,
    content_type: String,
    retry_after: Option<Duration>,
    body: Bytes,
}

impl<'a> Platform<'a> {
    fn new(api: &'a HerokuApi, timing: &'a Timing, lines: &'a LineSender) -> Result<Self, String> {
        let mut auth =
            HeaderValue::from_str(&format!("Bearer {}", api.api_key.expose())).map_err(|_| {
                "HEROKU_API_KEY holds characters that cannot be sent in an HTTP header \
                 (a trailing newline?)"
                    .to_string()
            })?;
        auth.set_sensitive(true);
        Ok(Platform {
            http: Http::new(),
            base: api.base_url.trim_end_matches('/'),
            auth,
            key: api.api_key.expose(),
            timing,
            lines,
        })
    }

    /// A line from faseng, with the key scrubbed from anything a server said.
    async fn note(&self, line: impl Into<String>) {
        note(self.lines, scrub(&line.into(), self.key)).await;
    }

    fn uri(&self, path: &str) -> Result<Uri, String> {
        let uri: Uri = format!("{}{path}", self.base)
            .parse()
            .map_err(|e| format!("HEROKU_API_URL is not a usable URL: {e}"))?;
        match uri.scheme_str() {
            Some("http" | "https") if uri.host().is_some() => Ok(uri),
            _ => {
                Err("HEROKU_API_URL must start with https:// (or http:// for a local fake)".into())
            }
        }
    }

    /// `POST /apps/{app}/builds`.
    async fn create(&self, plan: &HerokuPlan) -> Result<Build, String> {
        let app = &plan.app_name;
        let uri = self.uri(&format!("/apps/{app}/builds"))?;
        let body = serde_json::json!({
            "source_blob": {"url": plan.source_url, "version": plan.version}
        });
        let answer = self
            .call(Method::POST, &uri, Some(body.to_string()), false)
            .await?;
        let not_found = || {
            format!(
                "Heroku app `{app}` not found (404): check `heroku_<environment>_name` or \
                 `heroku_name` in app.json, and that the account of HEROKU_API_KEY can see the app"
            )
        };
        let build = self.json(answer, app, not_found, "creating the build")?;
        let id = build
            .get("id")
            .and_then(Value::as_str)
            .ok_or("Heroku's answer to creating the build has no build `id`")?
            .to_string();
        check_name("build id", &id)?;
        let output_stream_url = build
            .get("output_stream_url")
            .and_then(Value::as_str)
            .map(str::to_string);
        Ok(Build {
            id,
            output_stream_url,
        })
    }

    /// `GET /apps/{app}/builds/{id}` until the build is over.
    ///
    /// While the output streams, the first poll waits for the stream to end
    /// (or the slow safety-net interval). While the stream is down, or after
    /// it ended without the build being over, the polls back off from
    /// [`Timing::poll`] to [`Timing::poll_cap`]; output flowing again starts
    /// the backoff over. A 429 (the account's rate limit) is not an error
    /// here: the next poll waits for its `Retry-After`, else for the backoff.
    async fn poll(
        &self,
        app: &str,
        id: &str,
        mut output: watch::Receiver<Output>,
    ) -> Result<Status, String> {
        let uri = self.uri(&format!("/apps/{app}/builds/{id}"))?;
        let base = self.timing.poll;
        let cap = self.timing.poll_cap.max(base);
        let mut backoff = base;
        let mut seen = *output.borrow_and_update();
        let mut listening = true;
        let mut next = Instant::now()
            + match seen {
                Output::Streaming => self.timing.poll_while_streaming,
                Output::Ended => Duration::ZERO,
                Output::Down => step(&mut backoff, cap),
            };
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(next) => {}
                changed = output.changed(), if listening => {
                    listening = changed.is_ok();
                    let now = *output.borrow_and_update();
                    if now == seen {
                        continue;
                    }
                    seen = now;
                    match now {
                        Output::Streaming => {
                            backoff = base;
                            next = Instant::now() + self.timing.poll_while_streaming;
                            continue;
                        }
                        Output::Down => {
                            tracing::debug!(build = id, "Heroku output stream down: polls back off");
                            next = next.min(Instant::now() + step(&mut backoff, cap));
                            continue;
                        }
                        Output::Ended => backoff = base,
                    }
                }
            }
            let answer = self.call(Method::GET, &uri, None, true).await?;
            if answer.status == StatusCode::TOO_MANY_REQUESTS {
                let backed_off = step(&mut backoff, cap);
                let wait = answer.retry_after.unwrap_or(backed_off);
                if wait > self.timing.max_retry_wait {
                    return Err(format!(
                        "Heroku API answered 429 (rate limit) to the status of build {id}, and \
                         asks to wait {} s, longer than faseng waits ({} s); the build goes on: \
                         see `heroku builds:info {id} --app {app}`",
                        wait.as_secs(),
                        self.timing.max_retry_wait.as_secs()
                    ));
                }
                tracing::warn!(
                    build = id,
                    wait_ms = wait.as_millis(),
                    "Heroku rate limit on a status poll"
                );
                self.note(format!(
                    "Heroku API answered 429 (rate limit) to the build status: asking again in {} ms",
                    wait.as_millis()
                ))
                .await;
                next = Instant::now() + wait;
                continue;
            }
            let not_found = || format!("Heroku build `{id}` of app `{app}` not found (404)");
            let build = self.json(answer, app, not_found, "the build status")?;
            match build.get("status").and_then(Value::as_str) {
                Some("pending") => {
                    next = Instant::now()
                        + match seen {
                            Output::Streaming => self.timing.poll_while_streaming,
                            Output::Ended | Output::Down => step(&mut backoff, cap),
                        };
                }
                Some("succeeded") => return Ok(Status::Succeeded),
                Some("failed") => return Ok(Status::Failed),
                Some(other) => {
                    return Err(format!(
                        "Heroku build {id} has a status faseng does not know: `{}`",
                        printable(other, 40)
                    ));
                }
                None => return Err(format!("Heroku's build {id} has no `status`")),
            }
        }
    }

    /// A 2xx answer's JSON object; any other answer as a clear reason.
    fn json(
        &self,
        answer: Answer,
        app: &str,
        not_found: impl FnOnce() -> String,
        what: &str,
    ) -> Result<Value, String> {
        let code = answer.status.as_u16();
        match answer.status {
            s if s.is_success() => match serde_json::from_slice::<Value>(&answer.body) {
                Ok(v) if v.is_object() => Ok(v),
                _ => Err(format!(
                    "Heroku API answered {code} to {what} with a body that is not a JSON object \
                     ({}): `{}`",
                    if answer.content_type.is_empty() {
                        "no content type"
                    } else {
                        &answer.content_type
                    },
                    printable(&String::from_utf8_lossy(&answer.body), 80)
                )),
            },
            StatusCode::UNAUTHORIZED => Err(format!(
                "Heroku refused the API key ({code}): check HEROKU_API_KEY ({})",
                heroku_message(&answer.body)
            )),
            StatusCode::FORBIDDEN => Err(format!(
                "Heroku refused the API key ({code}) for app `{app}`: check that HEROKU_API_KEY \
                 belongs to an account with access to it ({})",
                heroku_message(&answer.body)
            )),
            StatusCode::NOT_FOUND => Err(not_found()),
            _ => Err(format!(
                "Heroku API answered {code} to {what} for app `{app}`: {}",
                heroku_message(&answer.body)
            )),
        }
    }

    /// One API request, retried on network errors, 429 and 5xx with backoff
    /// (honouring `Retry-After`). With `hand_back_429`, a 429 is the caller's
    /// to wait for instead (the status polls, which have their own pace).
    ///
    /// Retrying `POST /builds` may in rare cases start a second build of the
    /// same version (the first request reached Heroku but its answer was
    /// lost): that deploys the same code twice, which is harmless, while
    /// failing a deployment on one passing 503 is what users complain about.
    async fn call(
        &self,
        method: Method,
        uri: &Uri,
        body: Option<String>,
        hand_back_429: bool,
    ) -> Result<Answer, String> {
        let mut attempt = 1;
        loop {
            let request = self.request(method.clone(), uri, body.clone())?;
            let outcome =
                tokio::time::timeout(self.timing.request_timeout, self.exchange(request)).await;
            let (failure, retry_after) = match outcome {
                Ok(Ok(answer))
                    if !answer.status.is_server_error()
                        && (hand_back_429 || answer.status != StatusCode::TOO_MANY_REQUESTS) =>
                {
                    return Ok(answer);
                }
                Ok(Ok(answer)) => (
                    Failure::Status(answer.status.as_u16(), heroku_message(&answer.body)),
                    answer.retry_after,
                ),
                Ok(Err(Exchange::Fatal(why))) => return Err(why),
                Ok(Err(Exchange::Network(why))) => (Failure::Network(why), None),
                Err(_) => (
                    Failure::Network(format!(
                        "no answer within {} s",
                        self.timing.request_timeout.as_secs()
                    )),
                    None,
                ),
            };
            if attempt >= ATTEMPTS {
                return Err(failure.exhausted());
            }
            let backoff = self.timing.retry_base * 2u32.saturating_pow(attempt - 1);
            let wait = retry_after.unwrap_or(backoff);
            if wait > self.timing.max_retry_wait {
                return Err(format!(
                    "{}, and asks to wait {} s before retrying, longer than faseng waits ({} s)",
                    failure.once(),
                    wait.as_secs(),
                    self.timing.max_retry_wait.as_secs()
                ));
            }
            tracing::warn!(%uri, attempt, "Heroku API request failed; retrying");
            self.note(format!(
                "{}; retrying in {} ms (attempt {} of {ATTEMPTS})",
                failure.once(),
                wait.as_millis(),
                attempt + 1
            ))
            .await;
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }

    fn request(
        &self,
        method: Method,
        uri: &Uri,
        body: Option<String>,
    ) -> Result<Request<Full<Bytes>>, String> {
        let mut builder = Request::builder()
            .method(method)
            .uri(uri.clone())
            .header(ACCEPT, ACCEPT_V3)
            .header(AUTHORIZATION, self.auth.clone())
            .header(USER_AGENT, USER_AGENT_VALUE);
        if body.is_some() {
            builder = builder.header(CONTENT_TYPE, "application/json");
        }
        builder
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| format!("cannot build the Heroku API request: {e}"))
    }

    /// Sends a request and reads the whole (bounded) answer.
    async fn exchange(&self, request: Request<Full<Bytes>>) -> Result<Answer, Exchange> {
        let response = self.http.send(request).await?;
        let status = response.status();
        let headers = response.headers();
        let retry_after = headers.get(RETRY_AFTER).and_then(parse_retry_after);
        let content_type = headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| printable(v, 60))
            .unwrap_or_default();
        let body = read_limited(response.into_body(), MAX_BODY_BYTES)
            .await
            .map_err(|e| match e {
                Read::TooBig => Exchange::Fatal(format!(
                    "Heroku API answered {} with a body over {} KiB: is HEROKU_API_URL the Platform API?",
                    status.as_u16(),
                    MAX_BODY_BYTES / 1024
                )),
                Read::Broken(why) => Exchange::Network(format!("the answer broke off: {why}")),
            })?;
        Ok(Answer {
            status,
            content_type,
            retry_after,
            body,
        })
    }

    /// Streams the build output to the log as stdout lines, and tells the
    /// polls through `state` whether it flows. Never an error: the output is
    /// for people, the build status decides the result.
    ///
    /// A stream that breaks off or cannot be opened is tried again with the
    /// polls' backoff, from the byte where it broke (`Range: bytes=N-`, as the
    /// Build resource's `output_stream_url` documents), for as long as the
    /// build is watched; only an answer that retrying cannot change (401, 403,
    /// 410...) ends it for good.
    async fn stream(&self, url: Option<&str>, state: &watch::Sender<Output>) {
        let Some(uri) = url
            .and_then(|u| u.parse::<Uri>().ok())
            .filter(|u| matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some())
        else {
            set_output(state, Output::Down);
            self.note(
                "Heroku gave no usable output_stream_url: the build output will not be shown",
            )
            .await;
            return;
        };
        let cap = self.timing.poll_cap.max(self.timing.poll);
        let mut backoff = self.timing.poll;
        // Bytes of output read so far: where a resumed stream starts.
        let mut read: u64 = 0;
        let mut failures: u32 = 0;
        let mut said_down = false;
        let mut splitter = LineSplitter::default();
        let mut ready = Vec::new();
        loop {
            let retry_after = match self.open_stream(&uri, read).await {
                Opened::Body { response, mut skip } => {
                    let mut body = response.into_body();
                    let broke = loop {
                        let data = match body.frame().await {
                            None => break None,
                            Some(Err(e)) => break Some(chain(&e)),
                            Some(Ok(frame)) => match frame.into_data() {
                                Ok(data) => data,
                                Err(_) => continue,
                            },
                        };
                        let repeated = usize::try_from(skip).unwrap_or(usize::MAX).min(data.len());
                        skip -= repeated as u64;
                        let data = data.slice(repeated..);
                        if data.is_empty() {
                            continue;
                        }
                        read += data.len() as u64;
                        if *state.borrow() != Output::Streaming {
                            // Output flows (again): the polls slow down and
                            // the backoff starts over.
                            set_output(state, Output::Streaming);
                            backoff = self.timing.poll;
                            failures = 0;
                            if said_down {
                                said_down = false;
                                tracing::info!("Heroku output stream resumed");
                                self.note("the Heroku build output is back").await;
                            }
                        }
                        splitter.push(&data, &mut ready);
                        for line in ready.drain(..) {
                            if self.lines.send((Stream::Stdout, line)).await.is_err() {
                                return;
                            }
                        }
                    };
                    let Some(why) = broke else {
                        break;
                    };
                    set_output(state, Output::Down);
                    tracing::warn!(error = %why, "Heroku output stream broke off; resuming it");
                    if !said_down {
                        said_down = true;
                        self.note(format!(
                            "the Heroku build output broke off ({why}): resuming it, and watching \
                             the build status meanwhile"
                        ))
                        .await;
                    }
                    None
                }
                Opened::Complete => break,
                Opened::Failed {
                    why,
                    retry_after,
                    retryable,
                } => {
                    set_output(state, Output::Down);
                    failures += 1;
                    if !retryable {
                        tracing::warn!(error = %why, "Heroku output stream refused; giving up on it");
                        self.note(format!(
                            "the Heroku build output is not available ({why}): watching the build status"
                        ))
                        .await;
                        break;
                    }
                    // Heroku may answer 404 for a moment before the stream
                    // exists: only repeated failures are worth a line.
                    if failures >= ATTEMPTS && !said_down {
                        said_down = true;
                        tracing::warn!(error = %why, "Heroku output stream unavailable; retrying");
                        self.note(format!(
                            "the Heroku build output is not available ({why}): trying again, and \
                             watching the build status meanwhile"
                        ))
                        .await;
                    }
                    retry_after
                }
            };
            let wait = retry_after
                .unwrap_or_else(|| step(&mut backoff, cap))
                .min(self.timing.max_retry_wait);
            tokio::time::sleep(wait).await;
        }
        if *state.borrow() != Output::Down {
            set_output(state, Output::Ended);
        }
        if let Some(line) = splitter.finish() {
            let _ = self.lines.send((Stream::Stdout, line)).await;
        }
    }

    /// `GET output_stream_url`, without the API key (it is a capability URL on
    /// another host), from byte `from` on.
    async fn open_stream(&self, uri: &Uri, from: u64) -> Opened {
        let mut request = Request::builder()
            .method(Method::GET)
            .uri(uri.clone())
            .header(USER_AGENT, USER_AGENT_VALUE);
        if from > 0 {
            request = request.header(RANGE, format!("bytes={from}-"));
        }
        let request = match request.body(Full::new(Bytes::new())) {
            Ok(r) => r,
            Err(e) => {
                return Opened::Failed {
                    why: format!("cannot build the request: {e}"),
                    retry_after: None,
                    retryable: false,
                };
            }
        };
        let sent = tokio::time::timeout(self.timing.request_timeout, self.http.send(request));
        match sent.await {
            Ok(Ok(r)) if r.status() == StatusCode::PARTIAL_CONTENT => Opened::Body {
                response: r,
                skip: 0,
            },
            Ok(Ok(r)) if r.status().is_success() => Opened::Body {
                response: r,
                skip: from,
            },
            Ok(Ok(r)) if r.status() == StatusCode::RANGE_NOT_SATISFIABLE && from > 0 => {
                Opened::Complete
            }
            Ok(Ok(r)) => {
                let status = r.status();
                Opened::Failed {
                    why: format!("answered {}", status.as_u16()),
                    retry_after: r.headers().get(RETRY_AFTER).and_then(parse_retry_after),
                    retryable: status == StatusCode::NOT_FOUND
                        || status == StatusCode::TOO_MANY_REQUESTS
                        || status.is_server_error(),
                }
            }
            Ok(Err(Exchange::Fatal(why))) => Opened::Failed {
                why,
                retry_after: None,
                retryable: false,
            },
            Ok(Err(Exchange::Network(why))) => Opened::Failed {
                why,
                retry_after: None,
                retryable: true,
            },
            Err(_) => Opened::Failed {
                why: format!(
                    "no answer within {} s",
                    self.timing.request_timeout.as_secs()
                ),
                retry_after: None,
                retryable: true,
            },
        }
    }
}

/// What an attempt ended with, when it may be retried.
enum Failure {
    Status(u16, String),
    Network(String),
}

impl Failure {
    fn once(&self) -> String {
        match self {
            Failure::Status(code, msg) => format!("Heroku API answered {code} ({msg})"),
            Failure::Network(why) => format!("Heroku API could not be reached ({why})"),
        }
    }

    fn exhausted(&self) -> String {
        match self {
            Failure::Status(code, msg) => {
                format!("Heroku API answered {code} {ATTEMPTS_WORD} times: {msg}")
            }
            Failure::Network(why) => {
                format!("Heroku API could not be reached {ATTEMPTS_WORD} times: {why}")
            }
        }
    }
}

/// Why one exchange failed.
enum Exchange {
    /// Worth retrying: the request may not have reached Heroku, or the
    /// answer was lost on the way.
    Network(String),
    /// Retrying cannot help.
    Fatal(String),
}

const USER_AGENT_VALUE: &str = concat!("faseng/", env!("CARGO_PKG_VERSION"), " (chima)");

/// The HTTP client: HTTPS with the machine's root certificates, plain HTTP
/// for local fakes. A machine without root certificates can still talk to a
/// fake over plain HTTP; HTTPS then fails with a clear reason.
enum Http {
    Tls(Client<HttpsConnector<HttpConnector>, Full<Bytes>>),
    Plain {
        client: Client<HttpConnector, Full<Bytes>>,
        why_no_tls: String,
    },
}

impl Http {
    fn new() -> Http {
        let mut tcp = HttpConnector::new();
        tcp.set_connect_timeout(Some(Duration::from_secs(10)));
        tcp.set_nodelay(true);
        let builder = Client::builder(TokioExecutor::new());
        // Only the ring provider is compiled in (see CRATES.md), so rustls
        // picks it without a process-wide default being installed.
        match HttpsConnectorBuilder::new().with_native_roots() {
            Ok(tls) => {
                tcp.enforce_http(false);
                let connector = tls.https_or_http().enable_http1().wrap_connector(tcp);
                Http::Tls(builder.build(connector))
            }
            Err(e) => Http::Plain {
                client: builder.build(tcp),
                why_no_tls: e.to_string(),
            },
        }
    }

    async fn send(&self, request: Request<Full<Bytes>>) -> Result<Response<Incoming>, Exchange> {
        let sent = match self {
            Http::Tls(client) => client.request(request).await,
            Http::Plain { client, why_no_tls } => {
                if request.uri().scheme_str() == Some("https") {
                    return Err(Exchange::Fatal(format!(
                        "cannot reach {} over HTTPS: this machine has no usable root \
                         certificates ({why_no_tls}); install ca-certificates",
                        request.uri().host().unwrap_or("the Heroku API")
                    )));
                }
                client.request(request).await
            }
        };
        sent.map_err(|e| Exchange::Network(chain(&e)))
    }
}

/// Why a body could not be read whole.
enum Read {
    TooBig,
    Broken(String),
}

/// Reads a body, refusing more than `limit` bytes.
async fn read_limited(mut body: Incoming, limit: usize) -> Result<Bytes, Read> {
    let announced = body.size_hint().exact().unwrap_or(0);
    if usize::try_from(announced).map_or(true, |n| n > limit) {
        return Err(Read::TooBig);
    }
    let mut buf = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| Read::Broken(chain(&e)))?;
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > limit {
                return Err(Read::TooBig);
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(Bytes::from(buf))
}

/// `Retry-After` as seconds or as an HTTP date.
fn parse_retry_after(value: &HeaderValue) -> Option<Duration> {
    let text = value.to_str().ok()?.trim();
    if let Ok(secs) = text.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = chrono::DateTime::parse_from_rfc2822(text).ok()?;
    let secs = (when.with_timezone(&chrono::Utc) - chrono::Utc::now()).num_seconds();
    Some(Duration::from_secs(u64::try_from(secs).unwrap_or(0)))
}

/// The `message` of a Heroku error object (`{"id": ..., "message": ...}`),
/// else the start of the body, made safe to show.
fn heroku_message(body: &[u8]) -> String {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let message = parsed
        .as_ref()
        .and_then(|v| v.get("message"))
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
    let message = printable(message.trim(), 300);
    if message.is_empty() {
        "no message".to_string()
    } else {
        message
    }
}

/// At most `max` characters of `text`, control characters replaced, so that a
/// server's answer cannot break the log or a chat message.
fn printable(text: &str, max: usize) -> String {
    let mut out: String = text
        .chars()
        .take(max)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.chars().nth(max).is_some() {
        out.push('…');
    }
    out
}

/// An error with its causes (`client error (Connect): tcp connect error: ...`).
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let more = cause.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = cause.source();
    }
    text
}

/// Hides the API key should a server or a library ever echo it.
fn scrub(text: &str, key: &str) -> String {
    if key.len() >= 4 && text.contains(key) {
        text.replace(key, "[REDACTED]")
    } else {
        text.to_string()
    }
}

/// A line from faseng itself, on stderr like the engine's other notes.
async fn note(lines: &LineSender, line: impl Into<String>) {
    let _ = lines.send((Stream::Stderr, line.into())).await;
}

/// Turns the chunks of the output stream into lines. Chunks are cut anywhere,
/// lines are cut at [`MAX_LINE_BYTES`] like a process's output is.
#[derive(Default)]
struct LineSplitter {
    buf: Vec<u8>,
    cut: usize,
}

impl LineSplitter {
    fn push(&mut self, mut data: &[u8], out: &mut Vec<String>) {
        while !data.is_empty() {
            let (content, rest, ends) = match data.iter().position(|&b| b == b'\n') {
                Some(i) => (&data[..i], &data[i + 1..], true),
                None => (data, &data[data.len()..], false),
            };
            let room = MAX_LINE_BYTES.saturating_sub(self.buf.len());
            let kept = content.len().min(room);
            self.buf.extend_from_slice(&content[..kept]);
            self.cut += content.len() - kept;
            if ends {
                out.push(self.take_line());
            }
            data = rest;
        }
    }

    /// The last line when the stream ended without a newline.
    fn finish(mut self) -> Option<String> {
        (!self.buf.is_empty() || self.cut > 0).then(|| self.take_line())
    }

    fn take_line(&mut self) -> String {
        if self.buf.last() == Some(&b'\r') {
            self.buf.pop();
        }
        let mut line = String::from_utf8_lossy(&self.buf).into_owned();
        if self.cut > 0 {
            line.push_str(&format!(" [line cut: {} more bytes]", self.cut));
        }
        self.buf.clear();
        self.cut = 0;
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(chunks: &[&[u8]]) -> Vec<String> {
        let mut s = LineSplitter::default();
        let mut out = Vec::new();
        for c in chunks {
            s.push(c, &mut out);
        }
        out.extend(s.finish());
        out
    }

    #[test]
    fn lines_are_reassembled_across_chunks() {
        assert_eq!(
            split(&[b"-----> Bui", b"lding\r\n  done\n\nlast"]),
            ["-----> Building", "  done", "", "last"]
        );
        assert!(split(&[b""]).is_empty());
    }

    #[test]
    fn long_lines_are_cut_with_a_note() {
        let long = vec![b'x'; MAX_LINE_BYTES + 10];
        let lines = split(&[&long[..100], &long[100..], b"\nnext\n"]);
        assert_eq!(lines.len(), 2);
        assert!(lines[0].ends_with(" [line cut: 10 more bytes]"));
        assert!(lines[0].starts_with(&"x".repeat(MAX_LINE_BYTES)));
        assert_eq!(lines[1], "next");
    }

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
    fn retry_after_reads_seconds_and_dates() {
        let secs = HeaderValue::from_static("7");
        assert_eq!(parse_retry_after(&secs), Some(Duration::from_secs(7)));
        let past = HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT");
        assert_eq!(parse_retry_after(&past), Some(Duration::ZERO));
        assert_eq!(parse_retry_after(&HeaderValue::from_static("soon")), None);
    }

    #[test]
    fn names_that_would_change_the_path_are_refused() {
        assert!(check_name("app name", "my-app-staging").is_ok());
        assert!(check_name("app name", "01234567-89ab-cdef-0123-456789abcdef").is_ok());
        for bad in ["", "../account", "a/b", "a?b", "a b", "a.b"] {
            assert!(check_name("app name", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn messages_are_taken_from_heroku_errors_and_made_printable() {
        assert_eq!(
            heroku_message(br#"{"id":"unauthorized","message":"Invalid credentials provided."}"#),
            "Invalid credentials provided."
        );
        assert_eq!(
            heroku_message(b"<h1>Bad\nGateway</h1>"),
            "<h1>Bad Gateway</h1>"
        );
        assert_eq!(heroku_message(b""), "no message");
        assert_eq!(printable("abcdef", 3), "abc…");
        assert_eq!(
            scrub("key HRKU-abc in text", "HRKU-abc"),
            "key [REDACTED] in text"
        );
    }
}
