//! A fake Heroku Platform API: the build endpoints faseng's `heroku` provider
//! uses, plus the build output stream, on 127.0.0.1.
//!
//! It is strict where the real API is (the `Accept` version header, the bearer
//! key, a `source_blob.url` in the body) so that a client that passes here has
//! a fair chance against Heroku, and it records every request so that tests can
//! assert what was sent. Shapes follow Heroku's Platform API reference for the
//! Build resource (`id`, `status`, `output_stream_url`, `source_blob`, `app`...)
//! and its error objects (`{"id": "unauthorized", "message": "..."}`):
//! <https://devcenter.heroku.com/articles/platform-api-reference#build-create>,
//! used as in <https://devcenter.heroku.com/articles/build-and-release-using-the-api>.
//!
//! The output stream can fail while the build goes on (refused with a 5xx, or
//! dropped mid-way), as the reference warns ("clients should be prepared to
//! handle disconnects"); it resumes from a `Range: bytes=N-` header as the
//! reference says text/plain streams do. Builds can last a given time rather
//! than a number of polls, and [`FakeHeroku::status_polls`] counts the polls,
//! so that a test can tell how hard a client polls.
//!
//! ```no_run
//! # async fn demo() {
//! use chima_testkit::heroku::{Behaviour, FakeHeroku};
//! let fake = FakeHeroku::start(Behaviour::succeeds()).await;
//! // point HEROKU_API_URL at fake.url, use fake.api_key() as HEROKU_API_KEY
//! assert!(fake.requests().is_empty());
//! # }
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// The key the fake accepts unless a test sets another one. It has the shape
/// of a real Heroku key (`HRKU-` prefix) so that redaction is exercised too.
pub const API_KEY: &str = "HRKU-testkit-0123456789abcdef0123456789";

/// The `Accept` header Heroku requires (version 3 of the Platform API).
pub const ACCEPT: &str = "application/vnd.heroku+json; version=3";

/// How the fake answers `POST /apps/{app}/builds`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Create {
    /// 201 with a `pending` build.
    Created,
    /// 401 `unauthorized`, whatever key is sent.
    Unauthorized,
    /// 403 `forbidden` (the key's account has no access to the app).
    Forbidden,
    /// 404 `not_found` for the app.
    AppNotFound,
    /// Answer `status` (503, 429...) `times` times, then create the build.
    /// `u32::MAX` answers it forever. `retry_after` sets `Retry-After` (seconds).
    Errors {
        status: u16,
        times: u32,
        retry_after: Option<u64>,
    },
    /// 201 with an HTML body, as a misconfigured proxy would send.
    NotJson,
    /// 201 with a valid JSON body of about this many bytes.
    Huge(usize),
}

/// How a created build ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Succeeded,
    Failed,
    /// Stays `pending` forever: for deadline and cancel tests.
    Pending,
}

/// How the build's output stream misbehaves. The build goes on regardless:
/// its status (and so the deployment's result) does not depend on the stream.
///
/// The Build resource's `output_stream_url` says: "Clients should be prepared
/// to handle disconnects and can resume the stream by sending a Range header"
/// (<https://devcenter.heroku.com/articles/platform-api-reference#build>).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamFault {
    /// The stream works.
    None,
    /// Every request for the stream answers this status (503...): a dead
    /// stream, for as long as the build runs.
    Refused(u16),
    /// The first `times` connections are dropped after `after_bytes` bytes of
    /// output (the chunked body never ends: the client sees the connection
    /// break); later connections work. `u32::MAX`: every connection.
    Drops { after_bytes: usize, times: u32 },
}

/// Everything a test can switch. Start from a constructor and change fields.
#[derive(Debug, Clone)]
pub struct Behaviour {
    pub create: Create,
    pub outcome: Outcome,
    /// The build output, one entry per line.
    pub output: Vec<String>,
    /// The output is sent in this many pieces, cut at arbitrary points (also
    /// in the middle of lines), so that clients must reassemble lines.
    pub chunks: usize,
    /// Pause before each piece: the output arrives slowly, as on Heroku.
    pub chunk_delay: Duration,
    /// After the last piece, keep the stream open forever (a stalled stream).
    pub stream_stays_open: bool,
    /// How the output stream fails, if it does.
    pub stream_fault: StreamFault,
    /// How many status polls answer `pending` before the outcome.
    pub pending_polls: u32,
    /// The build also stays `pending` until this long after its creation,
    /// whatever the number of polls: a build of known length, to count how
    /// often a client polls during it.
    pub build_duration: Option<Duration>,
    /// Answer this many status polls with 503 first (after creation).
    pub poll_errors: u32,
    /// Then answer this many status polls with 429 `rate_limit`, as Heroku
    /// does once the account's request budget is spent
    /// (<https://devcenter.heroku.com/articles/platform-api-reference#rate-limits>).
    pub poll_rate_limited: u32,
    /// The `Retry-After` (seconds) of those 429s, if any. Heroku documents
    /// `RateLimit-Remaining` rather than `Retry-After`; HTTP allows both
    /// (RFC 9110 section 10.2.3), so a client must cope with either.
    pub poll_retry_after: Option<u64>,
    /// The only key accepted as `Authorization: Bearer <key>`.
    pub api_key: String,
}

impl Behaviour {
    /// A build that streams [`Behaviour::default_output`] and succeeds.
    pub fn succeeds() -> Self {
        Behaviour {
            create: Create::Created,
            outcome: Outcome::Succeeded,
            output: Self::default_output(),
            chunks: 4,
            chunk_delay: Duration::from_millis(50),
            stream_stays_open: false,
            stream_fault: StreamFault::None,
            pending_polls: 2,
            build_duration: None,
            poll_errors: 0,
            poll_rate_limited: 0,
            poll_retry_after: None,
            api_key: API_KEY.to_string(),
        }
    }

    /// A build that streams its output and then fails.
    pub fn fails() -> Self {
        Behaviour {
            outcome: Outcome::Failed,
            output: vec![
                "-----> Building on the Heroku-24 stack".to_string(),
                "-----> Ruby app detected".to_string(),
                " !     Failed to install gems via Bundler.".to_string(),
                " !     Push rejected, failed to compile Ruby app.".to_string(),
            ],
            ..Self::succeeds()
        }
    }

    /// A build that never leaves `pending`.
    pub fn never_finishes() -> Self {
        Behaviour {
            outcome: Outcome::Pending,
            ..Self::succeeds()
        }
    }

    /// 401 on create.
    pub fn unauthorized() -> Self {
        Behaviour {
            create: Create::Unauthorized,
            ..Self::succeeds()
        }
    }

    /// 404 on create: no such app.
    pub fn app_not_found() -> Self {
        Behaviour {
            create: Create::AppNotFound,
            ..Self::succeeds()
        }
    }

    /// 503 `times` times on create, then success (`u32::MAX`: forever).
    pub fn server_errors(times: u32) -> Self {
        Behaviour {
            create: Create::Errors {
                status: 503,
                times,
                retry_after: None,
            },
            ..Self::succeeds()
        }
    }

    /// 429 with `Retry-After: retry_after` `times` times on create, then success.
    pub fn rate_limited(times: u32, retry_after: u64) -> Self {
        Behaviour {
            create: Create::Errors {
                status: 429,
                times,
                retry_after: Some(retry_after),
            },
            ..Self::succeeds()
        }
    }

    /// A build of `duration` that succeeds while its output stream answers
    /// `status` (503...) to every request.
    pub fn dead_stream(status: u16, duration: Duration) -> Self {
        Behaviour {
            stream_fault: StreamFault::Refused(status),
            pending_polls: 0,
            build_duration: Some(duration),
            ..Self::succeeds()
        }
    }

    /// What a small Node.js build prints.
    pub fn default_output() -> Vec<String> {
        [
            "-----> Building on the Heroku-24 stack",
            "-----> Determining which buildpack to use for this app",
            "-----> Node.js app detected",
            "       Installing node 22.11.0",
            "       added 112 packages in 3s",
            "-----> Compressing...",
            "       Done: 41.2M",
            "-----> Launching...",
            "       Released v42",
            "       https://example-app.herokuapp.com/ deployed to Heroku",
        ]
        .map(String::from)
        .to_vec()
    }
}

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    /// The path without the query.
    pub path: String,
    /// Header names in lower case, in the order received.
    pub headers: Vec<(String, String)>,
    /// The raw body, as text (lossy).
    pub body: String,
    /// The body parsed as JSON, when it is JSON.
    pub json: Option<Value>,
}

impl Recorded {
    /// The first value of a header (name in any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

struct Build {
    app: String,
    source_blob: Value,
    polls: u32,
    created: Instant,
}

struct State {
    url: String,
    behaviour: Behaviour,
    requests: Vec<Recorded>,
    create_errors_sent: u32,
    poll_errors_sent: u32,
    poll_429s_sent: u32,
    streams_dropped: u32,
    builds: HashMap<String, Build>,
}

type Shared = Arc<Mutex<State>>;

fn lock(state: &Shared) -> MutexGuard<'_, State> {
    // A test that panicked while holding the lock must not hide the requests
    // from the next assertion.
    state.lock().unwrap_or_else(|e| e.into_inner())
}

/// A running fake. It stops when dropped.
pub struct FakeHeroku {
    /// `http://127.0.0.1:PORT`: use as `HEROKU_API_URL`.
    pub url: String,
    state: Shared,
    task: JoinHandle<()>,
}

impl FakeHeroku {
    /// Starts the fake on a random port of 127.0.0.1.
    ///
    /// # Panics
    /// When no port can be bound: the test cannot run anyway.
    pub async fn start(behaviour: Behaviour) -> FakeHeroku {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0 for the fake Heroku");
        let addr = listener.local_addr().expect("local address of the fake");
        let url = format!("http://{addr}");
        let state: Shared = Arc::new(Mutex::new(State {
            url: url.clone(),
            behaviour,
            requests: Vec::new(),
            create_errors_sent: 0,
            poll_errors_sent: 0,
            poll_429s_sent: 0,
            streams_dropped: 0,
            builds: HashMap::new(),
        }));
        let app = Router::new().fallback(handle).with_state(state.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeHeroku { url, state, task }
    }

    /// The key the fake accepts.
    pub fn api_key(&self) -> String {
        lock(&self.state).behaviour.api_key.clone()
    }

    /// Every request so far, in order.
    pub fn requests(&self) -> Vec<Recorded> {
        lock(&self.state).requests.clone()
    }

    /// The requests with this method whose path starts with `prefix`.
    pub fn requests_to(&self, method: &str, prefix: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == method && r.path.starts_with(prefix))
            .collect()
    }

    /// How many builds were created.
    pub fn builds_created(&self) -> usize {
        lock(&self.state).builds.len()
    }

    /// The `source_blob.url` of each build created, in order: what Heroku
    /// would have downloaded.
    pub fn source_urls(&self) -> Vec<String> {
        let st = lock(&self.state);
        let mut builds: Vec<(&String, &Build)> = st.builds.iter().collect();
        // Ids end in the creation number, zero-padded: they sort in order.
        builds.sort_by(|a, b| a.0.cmp(b.0));
        builds
            .into_iter()
            .filter_map(|(_, b)| b.source_blob.get("url").and_then(Value::as_str))
            .map(str::to_string)
            .collect()
    }

    /// How many status polls (`GET /apps/{app}/builds/{id}`) arrived, whatever
    /// they were answered.
    pub fn status_polls(&self) -> usize {
        self.requests()
            .iter()
            .filter(|r| {
                r.method == "GET"
                    && matches!(
                        r.path.trim_matches('/').split('/').collect::<Vec<_>>()[..],
                        ["apps", _, "builds", _]
                    )
            })
            .count()
    }

    /// The requests for output streams, in order (with their `Range` headers).
    pub fn stream_requests(&self) -> Vec<Recorded> {
        self.requests_to("GET", "/streams/")
    }

    /// Changes the behaviour from now on (e.g. make a pending build finish).
    pub fn set_behaviour(&self, behaviour: Behaviour) {
        lock(&self.state).behaviour = behaviour;
    }
}

impl Drop for FakeHeroku {
    fn drop(&mut self) {
        // Stops accepting; connections still open end with the test's runtime.
        self.task.abort();
    }
}

async fn handle(
    axum::extract::State(state): axum::extract::State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let text = String::from_utf8_lossy(&body).into_owned();
    lock(&state).requests.push(Recorded {
        method: method.to_string(),
        path: path.clone(),
        headers: headers
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        json: serde_json::from_slice(&body).ok(),
        body: text,
    });

    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (method.as_str(), segments.as_slice()) {
        ("GET", ["streams", id]) => stream(&state, id, &headers),
        (m, ["apps", ..]) => {
            if let Some(refused) = check_api_headers(&state, &headers) {
                return refused;
            }
            match (m, segments.as_slice()) {
                ("POST", ["apps", app, "builds"]) => create(&state, app, &body),
                ("GET", ["apps", app, "builds", id]) => info(&state, app, id),
                _ => error(
                    StatusCode::NOT_FOUND,
                    "not_found",
                    "The requested API endpoint was not found.",
                ),
            }
        }
        _ => error(
            StatusCode::NOT_FOUND,
            "not_found",
            "The requested API endpoint was not found.",
        ),
    }
}

/// Heroku's checks before any endpoint: API version, then the key.
fn check_api_headers(state: &Shared, headers: &HeaderMap) -> Option<Response> {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !accept.contains("application/vnd.heroku+json") || !accept.contains("version=3") {
        return Some(error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "Please specify a version along with Heroku's API MIME type. For example, `Accept: application/vnd.heroku+json; version=3`.",
        ));
    }
    let key = lock(state).behaviour.api_key.clone();
    let authorized = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == format!("Bearer {key}"));
    if !authorized {
        return Some(error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Invalid credentials provided.",
        ));
    }
    None
}

fn create(state: &Shared, app: &str, body: &[u8]) -> Response {
    let mut st = lock(state);
    match st.behaviour.create.clone() {
        Create::Created | Create::NotJson | Create::Huge(_) => {}
        Create::Unauthorized => {
            return error(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "Invalid credentials provided.",
            );
        }
        Create::Forbidden => {
            return error(
                StatusCode::FORBIDDEN,
                "forbidden",
                "You do not have access to the app.",
            );
        }
        Create::AppNotFound => {
            return app_not_found();
        }
        Create::Errors {
            status,
            times,
            retry_after,
        } => {
            if st.create_errors_sent < times {
                st.create_errors_sent += 1;
                let status =
                    StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
                let (id, message) = if status == StatusCode::TOO_MANY_REQUESTS {
                    (
                        "rate_limit",
                        "Your account reached the API rate limit. Please wait a few minutes before making new requests.",
                    )
                } else {
                    ("unavailable", "The service is temporarily unavailable.")
                };
                let mut resp = error(status, id, message);
                if let Some(secs) = retry_after {
                    resp.headers_mut()
                        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
                }
                if status == StatusCode::TOO_MANY_REQUESTS {
                    resp.headers_mut()
                        .insert("ratelimit-remaining", HeaderValue::from(0));
                }
                return resp;
            }
        }
    }
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let Some(source_blob) = parsed
        .as_ref()
        .and_then(|v| v.get("source_blob"))
        .filter(|b| b.get("url").and_then(Value::as_str).is_some())
        .cloned()
    else {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_params",
            "source_blob.url is required.",
        );
    };
    let id = format!("01234567-89ab-cdef-0123-{:012x}", st.builds.len() + 1);
    st.builds.insert(
        id.clone(),
        Build {
            app: app.to_string(),
            source_blob,
            polls: 0,
            created: Instant::now(),
        },
    );
    let created = build_json(&st, &id, "pending");
    match st.behaviour.create {
        Create::NotJson => (
            StatusCode::CREATED,
            [(header::CONTENT_TYPE, "text/html")],
            "<html><body><h1>502 Bad Gateway</h1></body></html>",
        )
            .into_response(),
        Create::Huge(bytes) => {
            let mut big = created;
            big["padding"] = Value::String("x".repeat(bytes));
            json_response(StatusCode::CREATED, &big)
        }
        _ => json_response(StatusCode::CREATED, &created),
    }
}

fn info(state: &Shared, app: &str, id: &str) -> Response {
    let mut st = lock(state);
    if st.poll_errors_sent < st.behaviour.poll_errors {
        st.poll_errors_sent += 1;
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "The service is temporarily unavailable.",
        );
    }
    if st.poll_429s_sent < st.behaviour.poll_rate_limited {
        st.poll_429s_sent += 1;
        let mut resp = error(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limit",
            "Your account reached the API rate limit. Please wait a few minutes before making new requests.",
        );
        resp.headers_mut()
            .insert("ratelimit-remaining", HeaderValue::from(0));
        if let Some(secs) = st.behaviour.poll_retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        return resp;
    }
    let pending_polls = st.behaviour.pending_polls;
    let duration = st.behaviour.build_duration.unwrap_or_default();
    let outcome = st.behaviour.outcome;
    let Some(build) = st.builds.get_mut(id).filter(|b| b.app == app) else {
        return error(
            StatusCode::NOT_FOUND,
            "not_found",
            "Couldn't find that build.",
        );
    };
    build.polls += 1;
    let status = match outcome {
        _ if build.polls <= pending_polls => "pending",
        _ if build.created.elapsed() < duration => "pending",
        Outcome::Pending => "pending",
        Outcome::Succeeded => "succeeded",
        Outcome::Failed => "failed",
    };
    json_response(StatusCode::OK, &build_json(&st, id, status))
}

/// The build output: plain text, chunked, slow, from the byte a
/// `Range: bytes=N-` header asks for (206), failing as
/// [`Behaviour::stream_fault`] says.
fn stream(state: &Shared, id: &str, headers: &HeaderMap) -> Response {
    let mut st = lock(state);
    if !st.builds.contains_key(id) {
        return (StatusCode::NOT_FOUND, "stream not found\n").into_response();
    }
    let fault = st.behaviour.stream_fault;
    if let StreamFault::Refused(status) = fault {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        return (status, "stream unavailable\n").into_response();
    }
    let drop_after = match fault {
        StreamFault::Drops { after_bytes, times } if st.streams_dropped < times => {
            st.streams_dropped += 1;
            Some(after_bytes)
        }
        _ => None,
    };
    let b = &st.behaviour;
    let mut text = b.output.join("\n");
    if !text.is_empty() {
        text.push('\n');
    }
    let total = text.len();
    let from = match headers.get(header::RANGE).map(range_start) {
        None => None,
        Some(Some(from)) if from < total => Some(from),
        // Nothing past the end, or a Range this fake does not serve: 416,
        // as RFC 9110 section 15.5.17 says.
        Some(_) => {
            return (
                StatusCode::RANGE_NOT_SATISFIABLE,
                [(header::CONTENT_RANGE, format!("bytes */{total}"))],
            )
                .into_response();
        }
    };
    let rest = &text.as_bytes()[from.unwrap_or(0)..];
    let sent = drop_after.map_or(rest, |n| &rest[..n.min(rest.len())]);
    let pieces = split_pieces(sent, b.chunks.max(1));
    let delay = b.chunk_delay;
    let stays_open = b.stream_stays_open;
    let chunks = futures::stream::unfold(pieces.into_iter(), move |mut rest| async move {
        match rest.next() {
            Some(piece) => {
                tokio::time::sleep(delay).await;
                Some((Ok::<_, std::io::Error>(piece), rest))
            }
            None if drop_after.is_some() => {
                // An error in the body makes the server cut the connection
                // without ending the chunked body.
                tokio::time::sleep(delay).await;
                Some((Err(std::io::Error::other("dropped by the fake")), rest))
            }
            None => {
                if stays_open {
                    std::future::pending::<()>().await;
                }
                None
            }
        }
    });
    let mut response = (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        Body::from_stream(chunks),
    )
        .into_response();
    if let Some(from) = from {
        *response.status_mut() = StatusCode::PARTIAL_CONTENT;
        if let Ok(range) = HeaderValue::from_str(&format!("bytes {from}-{}/{total}", total - 1)) {
            response.headers_mut().insert(header::CONTENT_RANGE, range);
        }
    }
    response
}

/// `N` of `Range: bytes=N-`; `None` for any other range.
fn range_start(value: &HeaderValue) -> Option<usize> {
    value
        .to_str()
        .ok()?
        .trim()
        .strip_prefix("bytes=")?
        .strip_suffix('-')?
        .parse()
        .ok()
}

/// Cuts `bytes` into `n` pieces of about equal size, anywhere (also inside a
/// UTF-8 character), as a network may.
fn split_pieces(bytes: &[u8], n: usize) -> Vec<Bytes> {
    let size = bytes.len().div_ceil(n.max(1)).max(1);
    bytes.chunks(size).map(Bytes::copy_from_slice).collect()
}

/// A Build object as the Platform API returns it.
fn build_json(st: &State, id: &str, status: &str) -> Value {
    let Some(build) = st.builds.get(id) else {
        return Value::Null;
    };
    let done = status == "succeeded";
    json!({
        "app": {"id": "6789abcd-ef01-2345-6789-abcdef012345", "name": build.app},
        "buildpacks": [{"url": "heroku/nodejs", "name": "heroku/nodejs"}],
        "created_at": "2026-11-01T12:00:00Z",
        "id": id,
        "output_stream_url": format!("{}/streams/{id}", st.url),
        "source_blob": {
            "checksum": build.source_blob.get("checksum").cloned().unwrap_or(Value::Null),
            "url": build.source_blob.get("url").cloned().unwrap_or(Value::Null),
            "version": build.source_blob.get("version").cloned().unwrap_or(Value::Null),
            "version_description": null,
        },
        "release": if done { json!({"id": "abcdef01-2345-6789-abcd-ef0123456789", "version": 42}) } else { Value::Null },
        "slug": if done { json!({"id": "fedcba98-7654-3210-fedc-ba9876543210"}) } else { Value::Null },
        "stack": "heroku-24",
        "status": status,
        "updated_at": "2026-11-01T12:00:05Z",
        "user": {"email": "deployer@example.com", "id": "01234567-0000-0000-0000-000000000001"},
    })
}

fn app_not_found() -> Response {
    let mut body = json!({"id": "not_found", "message": "Couldn't find that app."});
    body["resource"] = Value::String("app".to_string());
    json_response(StatusCode::NOT_FOUND, &body)
}

fn error(status: StatusCode, id: &str, message: &str) -> Response {
    json_response(status, &json!({"id": id, "message": message}))
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        body.to_string(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::{HeaderValue, range_start, split_pieces};

    #[test]
    fn pieces_cover_the_bytes() {
        let text = "héllo\nwörld\n".as_bytes();
        for n in 1..8 {
            let pieces = split_pieces(text, n);
            assert_eq!(pieces.concat(), text);
            assert!(pieces.len() <= n);
        }
        assert!(split_pieces(b"", 3).is_empty());
    }

    #[test]
    fn only_open_ended_byte_ranges_are_served() {
        let start = |v: &'static str| range_start(&HeaderValue::from_static(v));
        assert_eq!(start("bytes=42-"), Some(42));
        assert_eq!(start("bytes=0-"), Some(0));
        assert_eq!(start("bytes=1-5"), None);
        assert_eq!(start("items=1-"), None);
    }
}
