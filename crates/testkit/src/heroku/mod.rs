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
//!
//! The fake is split by seam: this file holds what tests name (the key, the
//! scripted [`Behaviour`] of builds and their output, the record of a
//! request); `fake` the running [`FakeHeroku`] and what it holds; `api` the
//! build endpoints and Heroku's error objects; `stream` the output stream and
//! its faults.

mod api;
mod fake;
mod stream;

pub use fake::FakeHeroku;

use std::time::Duration;

use serde_json::Value;

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
