//! The Heroku Platform API as the runner uses it: one client, one key, and
//! the retries (network errors, 429, 5xx, with `Retry-After` or a backoff)
//! that make a flaky API survivable; creating a build and polling its status.

use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderValue, RETRY_AFTER, USER_AGENT};
use hyper::{Method, Request, StatusCode, Uri};
use serde_json::Value;
use tokio::sync::watch;
use tokio::time::Instant;

use super::http::{
    Exchange, Http, Read, USER_AGENT_VALUE, heroku_message, parse_retry_after, printable,
    read_limited, scrub,
};
use super::{
    ACCEPT_V3, ATTEMPTS, ATTEMPTS_WORD, Build, HerokuApi, HerokuPlan, MAX_BODY_BYTES, Output,
    Status, Timing, check_name, note, step,
};
use crate::process::LineSender;

/// The Platform API as the runner uses it: one client, one key, retries.
pub(super) struct Platform<'a> {
    pub(super) http: Http,
    pub(super) base: &'a str,
    pub(super) auth: HeaderValue,
    /// Only to scrub it from log lines that quote a server's answer.
    pub(super) key: &'a str,
    pub(super) timing: &'a Timing,
    pub(super) lines: &'a LineSender,
}

/// A whole (bounded) answer of the API.
pub(super) struct Answer {
    status: StatusCode,
    content_type: String,
    retry_after: Option<Duration>,
    body: Bytes,
}

impl<'a> Platform<'a> {
    pub(super) fn new(
        api: &'a HerokuApi,
        timing: &'a Timing,
        lines: &'a LineSender,
    ) -> Result<Self, String> {
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
    pub(super) async fn note(&self, line: impl Into<String>) {
        note(self.lines, scrub(&line.into(), self.key)).await;
    }

    pub(super) fn uri(&self, path: &str) -> Result<Uri, String> {
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
    pub(super) async fn create(&self, plan: &HerokuPlan) -> Result<Build, String> {
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
    pub(super) async fn poll(
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
    pub(super) fn json(
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
    pub(super) async fn call(
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

    pub(super) fn request(
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
    pub(super) async fn exchange(&self, request: Request<Full<Bytes>>) -> Result<Answer, Exchange> {
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
}

/// What an attempt ended with, when it may be retried.
pub(super) enum Failure {
    Status(u16, String),
    Network(String),
}

impl Failure {
    pub(super) fn once(&self) -> String {
        match self {
            Failure::Status(code, msg) => format!("Heroku API answered {code} ({msg})"),
            Failure::Network(why) => format!("Heroku API could not be reached ({why})"),
        }
    }

    pub(super) fn exhausted(&self) -> String {
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
