//! A fake GitHub REST API: the deployment, deployment status, repository, commit
//! status, check run, tarball and GitHub App endpoints chima and faseng use, on
//! 127.0.0.1, also under the `/api/v3` prefix of GitHub Enterprise Server.
//!
//! It is strict where GitHub is (a `User-Agent` is required, only known credentials
//! pass, App endpoints take only a well-formed RS256 JWT whose `iss` is a known App,
//! statuses with an unknown state or a description over 140 characters are refused)
//! and answers in the shapes GitHub documents, so that a client that passes here has
//! a fair chance against GitHub. It records every request so that tests can assert
//! what was sent, and it can be told to answer the next calls of an endpoint
//! differently: auto-merge (202), failing contexts or merge conflict (409), 401, 403,
//! 404, 5xx, a rate limit (403 with `x-ratelimit-remaining: 0`, 403 with
//! `Retry-After`, 429), or a create that succeeds and then fails (502) or hangs.
//!
//! Behaviours that follow GitHub's published REST description, each cited where it
//! is implemented:
//! - lists are paged (`per_page` 30 by default, at most 100, `page`) with a `Link`
//!   header, and check runs carry `total_count`
//!   (<https://docs.github.com/en/rest/using-the-rest-api/using-pagination-in-the-rest-api>);
//! - a deployment create checks every required context, commit statuses and check
//!   runs alike, and answers 409 when one is not green
//!   (<https://docs.github.com/en/rest/deployments/deployments#create-a-deployment>);
//! - a `success` status with `auto_inactive` (default true) adds an `inactive` status to
//!   the prior successful non-transient, non-production deployments of its environment
//!   (<https://docs.github.com/en/rest/deployments/statuses#create-a-deployment-status>);
//! - secondary rate limits: 403 with `Retry-After` and GitHub's message, scripted or,
//!   with [`FakeGitHub::limit_write_rate`], whenever writes on one credential come
//!   closer together than allowed
//!   (<https://docs.github.com/en/rest/using-the-rest-api/rate-limits-for-the-rest-api>,
//!   <https://docs.github.com/en/rest/using-the-rest-api/best-practices-for-using-the-rest-api>).
//!
//! ```no_run
//! # async fn demo() {
//! use chima_testkit::github::{Endpoint, FakeGitHub, Reply};
//! let fake = FakeGitHub::start().await;
//! fake.add_repo("acme/web", "main");
//! fake.script(Endpoint::CreateDeployment, Reply::Status(502), 2);
//! // point GITHUB_API_URL at fake.url (or fake.ghe_url()), GITHUB_TOKEN at fake.token()
//! # }
//! ```
//!
//! - the last step of the app-from-manifest flow, `POST /app-manifests/{code}/conversions`,
//!   unauthenticated, 201 with the new App or 404 for an unknown code
//!   (<https://docs.github.com/en/rest/apps/apps#create-a-github-app-from-a-manifest>;
//!   codes come from [`FakeGitHub::add_manifest_code`]).
//!
//! Also here: [`send_webhook`] (a signed delivery, as GitHub sends it) and
//! [`deployment_event`] (a `deployment` webhook body in GitHub's shape).
//!
//! The fake is split by seam: this file holds what tests name (the constants,
//! the scripted [`Endpoint`] and [`Reply`], the records of what was received);
//! `fake` the running [`FakeGitHub`] and the calls tests set it up with;
//! `state` what it holds; `server` the routing of a request to its answer and
//! the scripted failures; `auth` tokens, App JWTs and installations; `deployments`
//! and `commits` the REST endpoints; `answers` the JSON shapes and errors GitHub
//! answers with; `webhook` the deliveries sent to the code under test.

mod answers;
mod auth;
mod commits;
mod deployments;
mod fake;
mod server;
mod state;
mod webhook;

pub use fake::FakeGitHub;
pub use webhook::{deployment_event, send_raw_put, send_raw_webhook, send_webhook, sign};

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::Value;

/// The personal access token the fake accepts unless a test sets another one. It has
/// the shape of a real classic token (`ghp_` prefix) so that redaction is exercised.
pub const TOKEN: &str = "ghp_testkitFAKE0123456789abcdefABCDEFghij";

/// The login deployments created with [`TOKEN`] are attributed to.
pub const TOKEN_LOGIN: &str = "chima-bot";

/// The prefix GitHub Enterprise Server puts before the REST API.
pub const GHE_PREFIX: &str = "/api/v3";

/// First id given to a deployment; statuses start at 5000.
pub const FIRST_DEPLOYMENT_ID: i64 = 1000;

/// Which endpoint a scripted [`Reply`] applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// `POST /repos/{o}/{r}/deployments`
    CreateDeployment,
    /// `GET /repos/{o}/{r}/deployments`
    ListDeployments,
    /// `POST /repos/{o}/{r}/deployments/{id}/statuses`
    CreateStatus,
    /// `GET /repos/{o}/{r}/deployments/{id}/statuses`
    ListStatuses,
    /// `GET /repos/{o}/{r}`
    GetRepo,
    /// `GET /repos/{o}/{r}/commits/{ref}/status`
    CombinedStatus,
    /// `GET /repos/{o}/{r}/commits/{ref}/check-runs`
    CheckRuns,
    /// `GET /repos/{o}/{r}/tarball/{sha}`
    Tarball,
    /// `GET /repos/{o}/{r}/installation`
    Installation,
    /// `GET /repos/{o}/{r}/compare/{base}...{head}`
    Compare,
    /// `POST /app/installations/{id}/access_tokens`
    AccessToken,
    /// Every endpoint above.
    Any,
}

/// A scripted answer, used instead of the normal one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// 202 `{"message": "Auto-merged master into topic-branch on deploy."}`: nothing
    /// created (deployment create only).
    AutoMerged,
    /// 409 naming these `(context, state)` pairs (deployment create only).
    FailingContexts(Vec<(String, String)>),
    /// 409 `Conflict merging master into topic-branch.` (deployment create only).
    MergeConflict,
    /// 401 `Bad credentials`.
    Unauthorized,
    /// 403 `Resource not accessible by personal access token`, with
    /// `x-accepted-github-permissions`.
    Forbidden,
    /// 404 `Not Found`.
    NotFound,
    /// This status with a GitHub-shaped error body (500, 502, 503, 422...).
    Status(u16),
    /// 403, `x-ratelimit-remaining: 0`, `x-ratelimit-reset` this many seconds ahead.
    RateLimited { reset_in_secs: u64 },
    /// 403 with `Retry-After` (a secondary rate limit).
    SecondaryRateLimit { retry_after_secs: u64 },
    /// 429 with `Retry-After`.
    TooManyRequests { retry_after_secs: u64 },
    /// Deployment create only: the deployment is created and stored (its webhook
    /// would go out), then the answer is this status (502, 500...) instead of the
    /// 201. GitHub's 5xx say nothing of what was done: "If GitHub takes more than 10
    /// seconds to process an API request, GitHub will terminate the request and you
    /// will receive a timeout response and a 'Server Error' message"
    /// (<https://docs.github.com/en/rest/using-the-rest-api/troubleshooting-the-rest-api#timeouts>),
    /// and a create does not promise to be undone; a client that retries blindly
    /// makes a second deployment
    /// (<https://docs.github.com/en/rest/deployments/deployments#create-a-deployment>).
    CreateThenFail(u16),
    /// Deployment create only: the deployment is created and stored, then the answer
    /// is held this long (past the client's timeout) before the 201 goes out.
    CreateThenHang(Duration),
}

/// A commit status to serve for a ref.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeStatus {
    pub context: String,
    /// `success`, `pending`, `failure`, `error`.
    pub state: String,
    pub target_url: Option<String>,
    pub description: Option<String>,
}

impl FakeStatus {
    pub fn new(context: &str, state: &str) -> Self {
        FakeStatus {
            context: context.to_string(),
            state: state.to_string(),
            target_url: Some(format!("https://ci.example.com/{context}")),
            description: Some(format!("{context}: {state}")),
        }
    }
}

/// A check run to serve for a ref.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeCheckRun {
    pub name: String,
    /// `queued`, `in_progress`, `completed`.
    pub status: String,
    pub conclusion: Option<String>,
    pub html_url: Option<String>,
}

impl FakeCheckRun {
    pub fn new(name: &str, status: &str, conclusion: Option<&str>) -> Self {
        FakeCheckRun {
            name: name.to_string(),
            status: status.to_string(),
            conclusion: conclusion.map(str::to_string),
            html_url: Some(format!("https://github.com/runs/{name}")),
        }
    }
}

/// A deployment the fake holds.
#[derive(Debug, Clone, PartialEq)]
pub struct FakeDeployment {
    pub id: i64,
    /// `owner/name`.
    pub repo: String,
    pub sha: String,
    pub git_ref: String,
    pub task: String,
    pub environment: String,
    pub description: Option<String>,
    pub payload: Value,
    pub creator: String,
    pub created_at: DateTime<Utc>,
    pub production_environment: bool,
    pub transient_environment: bool,
    /// The request body as received (`Value::Null` for seeded ones).
    pub body: Value,
}

/// A deployment status the fake received.
#[derive(Debug, Clone, PartialEq)]
pub struct FakeDeploymentStatus {
    pub id: i64,
    pub deployment_id: i64,
    pub state: String,
    pub log_url: Option<String>,
    pub environment_url: Option<String>,
    pub description: Option<String>,
    pub auto_inactive: Option<bool>,
    pub created_at: DateTime<Utc>,
    /// The request body as received.
    pub body: Value,
}

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    /// The path as received, without the query (with `/api/v3` when it was used).
    pub path: String,
    /// The path without the `/api/v3` prefix: what route it hit.
    pub route: String,
    pub query: Option<String>,
    /// Header names in lower case, in the order received.
    pub headers: Vec<(String, String)>,
    /// The raw body, as text (lossy).
    pub body: String,
    /// The body parsed as JSON, when it is JSON.
    pub json: Option<Value>,
    /// When the fake received it (for spacing between requests).
    pub received_at: Instant,
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

    /// A query parameter's value (not percent-decoded).
    pub fn query_param(&self, name: &str) -> Option<String> {
        self.query.as_deref()?.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (k == name).then(|| v.to_string())
        })
    }
}

/// The App a manifest code of [`FakeGitHub::add_manifest_code`] creates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeManifestApp {
    pub id: u64,
    pub slug: String,
    /// Not a usable key: only its text is compared.
    pub pem: String,
    pub webhook_secret: String,
    pub client_id: String,
    pub client_secret: String,
}
