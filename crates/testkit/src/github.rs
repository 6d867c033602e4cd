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

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, SecondsFormat, Utc};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

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

struct Repo {
    id: i64,
    full_name: String,
    default_branch: String,
    private: bool,
    refs: HashMap<String, String>,
    statuses: HashMap<String, Vec<FakeStatus>>,
    checks: HashMap<String, Vec<FakeCheckRun>>,
}

struct Script {
    endpoint: Endpoint,
    deployment: Option<i64>,
    reply: Reply,
    remaining: u32,
}

struct Installation {
    app_id: u64,
    repos: Vec<String>,
}

struct IssuedToken {
    installation: i64,
    expires_at: DateTime<Utc>,
    revoked: bool,
}

struct State {
    token: String,
    repos: BTreeMap<String, Repo>,
    deployments: Vec<FakeDeployment>,
    statuses: Vec<FakeDeploymentStatus>,
    scripts: Vec<Script>,
    requests: Vec<Recorded>,
    apps: Vec<u64>,
    installations: BTreeMap<i64, Installation>,
    tokens: HashMap<String, IssuedToken>,
    token_lifetime: Duration,
    tokens_issued: usize,
    next_deployment: i64,
    next_status: i64,
    next_repo: i64,
    /// `repo|base|head` -> the compare status (`ahead`, `behind`, `identical`, `diverged`).
    compares: HashMap<String, String>,
    /// With [`FakeGitHub::limit_write_rate`]: the least time between two writes on
    /// one credential.
    write_gap: Option<Duration>,
    /// `Authorization` value -> when its last write arrived.
    last_write: HashMap<String, Instant>,
    /// App-from-manifest codes not yet exchanged, with the App each one creates.
    manifest_codes: HashMap<String, FakeManifestApp>,
}

type Shared = Arc<Mutex<State>>;

fn lock(state: &Shared) -> MutexGuard<'_, State> {
    // A test that panicked while holding the lock must not hide the requests
    // from the next assertion.
    state.lock().unwrap_or_else(|e| e.into_inner())
}

/// A running fake GitHub. It stops when dropped.
pub struct FakeGitHub {
    /// `http://127.0.0.1:PORT`: use as `GITHUB_API_URL` (github.com layout).
    pub url: String,
    state: Shared,
    task: JoinHandle<()>,
}

impl FakeGitHub {
    /// Starts the fake on a random port of 127.0.0.1, with no repository.
    ///
    /// # Panics
    /// When no port can be bound: the test cannot run anyway.
    pub async fn start() -> FakeGitHub {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0 for the fake GitHub");
        let addr = listener.local_addr().expect("local address of the fake");
        let url = format!("http://{addr}");
        let state: Shared = Arc::new(Mutex::new(State {
            token: TOKEN.to_string(),
            repos: BTreeMap::new(),
            deployments: Vec::new(),
            statuses: Vec::new(),
            scripts: Vec::new(),
            compares: HashMap::new(),
            requests: Vec::new(),
            apps: Vec::new(),
            installations: BTreeMap::new(),
            tokens: HashMap::new(),
            token_lifetime: Duration::from_secs(3600),
            tokens_issued: 0,
            next_deployment: FIRST_DEPLOYMENT_ID,
            next_status: 5000,
            next_repo: 100,
            write_gap: None,
            last_write: HashMap::new(),
            manifest_codes: HashMap::new(),
        }));
        let app = Router::new()
            .fallback(handle)
            .with_state((state.clone(), url.clone()));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeGitHub { url, state, task }
    }

    /// The same fake under GitHub Enterprise Server's layout: `http://127.0.0.1:PORT/api/v3`.
    pub fn ghe_url(&self) -> String {
        format!("{}{GHE_PREFIX}", self.url)
    }

    /// The personal access token accepted (`Authorization: Bearer` or `token`).
    pub fn token(&self) -> String {
        lock(&self.state).token.clone()
    }

    /// Accept another personal access token from now on (the old one gets 401).
    pub fn set_token(&self, token: &str) {
        lock(&self.state).token = token.to_string();
    }

    /// Adds a repository (`owner/name`) with its default branch.
    pub fn add_repo(&self, full_name: &str, default_branch: &str) {
        let mut st = lock(&self.state);
        st.next_repo += 1;
        let id = st.next_repo;
        st.repos.insert(
            full_name.to_ascii_lowercase(),
            Repo {
                id,
                full_name: full_name.to_string(),
                default_branch: default_branch.to_string(),
                private: false,
                refs: HashMap::new(),
                statuses: HashMap::new(),
                checks: HashMap::new(),
            },
        );
    }

    /// Marks a repository private: the tarball then needs credentials.
    pub fn set_private(&self, repo: &str, private: bool) {
        if let Some(r) = lock(&self.state).repos.get_mut(&repo.to_ascii_lowercase()) {
            r.private = private;
        }
    }

    /// What a ref resolves to. Refs not set resolve to a sha derived from their name
    /// (a 40-hex ref resolves to itself).
    pub fn set_ref(&self, repo: &str, git_ref: &str, sha: &str) {
        if let Some(r) = lock(&self.state).repos.get_mut(&repo.to_ascii_lowercase()) {
            r.refs.insert(git_ref.to_string(), sha.to_string());
        }
    }

    /// The sha `git_ref` resolves to in `repo`.
    pub fn sha_of(&self, repo: &str, git_ref: &str) -> String {
        let st = lock(&self.state);
        resolve(st.repos.get(&repo.to_ascii_lowercase()), git_ref)
    }

    /// The commit statuses of a ref (also used to refuse deployments whose required
    /// contexts are not all `success`, as GitHub does).
    pub fn set_commit_statuses(&self, repo: &str, git_ref: &str, statuses: Vec<FakeStatus>) {
        if let Some(r) = lock(&self.state).repos.get_mut(&repo.to_ascii_lowercase()) {
            r.statuses.insert(git_ref.to_string(), statuses);
        }
    }

    /// The check runs of a ref.
    pub fn set_check_runs(&self, repo: &str, git_ref: &str, runs: Vec<FakeCheckRun>) {
        if let Some(r) = lock(&self.state).repos.get_mut(&repo.to_ascii_lowercase()) {
            r.checks.insert(git_ref.to_string(), runs);
        }
    }

    /// Makes `code` a manifest code that GitHub's app-from-manifest flow would have
    /// redirected to: `POST /app-manifests/{code}/conversions` answers once with the
    /// App it returns (made a known App, as GitHub creates it), then 404.
    pub fn add_manifest_code(&self, code: &str) -> FakeManifestApp {
        let mut st = lock(&self.state);
        let id = 900_000 + st.manifest_codes.len() as u64 + st.apps.len() as u64;
        let app = FakeManifestApp {
            id,
            slug: format!("faseng-{id}"),
            pem: format!(
                "-----BEGIN RSA PRIVATE KEY-----\nFAKEKEY{id}{code}\n-----END RSA PRIVATE KEY-----\n"
            ),
            webhook_secret: format!("whsec{id}{code}"),
            client_id: format!("Iv1.{id:016x}"),
            client_secret: format!("{id:040x}"),
        };
        st.manifest_codes.insert(code.to_string(), app.clone());
        app
    }

    /// Installs GitHub App `app_id` as installation `installation_id` on `repos`.
    pub fn install_app(&self, app_id: u64, installation_id: i64, repos: &[&str]) {
        let mut st = lock(&self.state);
        if !st.apps.contains(&app_id) {
            st.apps.push(app_id);
        }
        st.installations.insert(
            installation_id,
            Installation {
                app_id,
                repos: repos.iter().map(|r| r.to_ascii_lowercase()).collect(),
            },
        );
    }

    /// How long installation tokens issued from now on live (default one hour).
    pub fn set_installation_token_lifetime(&self, lifetime: Duration) {
        lock(&self.state).token_lifetime = lifetime;
    }

    /// How many installation tokens were issued.
    pub fn installation_tokens_issued(&self) -> usize {
        lock(&self.state).tokens_issued
    }

    /// Revokes every installation token issued so far (they get 401 from now on).
    pub fn revoke_installation_tokens(&self) {
        for t in lock(&self.state).tokens.values_mut() {
            t.revoked = true;
        }
    }

    /// Answers the next `times` calls of `endpoint` with `reply` instead of the normal
    /// answer. Scripts queue: the first one with calls left is used.
    pub fn script(&self, endpoint: Endpoint, reply: Reply, times: u32) {
        lock(&self.state).scripts.push(Script {
            endpoint,
            deployment: None,
            reply,
            remaining: times,
        });
    }

    /// The next deployment create is carried out (stored, as GitHub would) and then
    /// answered with `status` (502, 500...) instead of its 201.
    pub fn create_then_fail(&self, status: u16) {
        self.script(Endpoint::CreateDeployment, Reply::CreateThenFail(status), 1);
    }

    /// The next deployment create is carried out, then its answer is held for `hold`.
    pub fn create_then_hang(&self, hold: Duration) {
        self.script(Endpoint::CreateDeployment, Reply::CreateThenHang(hold), 1);
    }

    /// From now on, a write (POST, PATCH, PUT, DELETE) arriving less than `gap` after
    /// the previous write with the same credentials gets GitHub's secondary rate limit
    /// answer (403, `Retry-After`). GitHub's best practices: "If you are making a
    /// large number of POST, PATCH, PUT, or DELETE requests for a single user or
    /// client ID, wait at least one second between each request"
    /// (<https://docs.github.com/en/rest/using-the-rest-api/best-practices-for-using-the-rest-api>).
    pub fn limit_write_rate(&self, gap: Duration) {
        lock(&self.state).write_gap = Some(gap);
    }

    /// Answers the next deployment create with `reply`.
    pub fn next_create(&self, reply: Reply) {
        self.script(Endpoint::CreateDeployment, reply, 1);
    }

    /// Fails the next `times` status posts (any deployment) with `status`.
    pub fn fail_statuses(&self, times: u32, status: u16) {
        self.script(Endpoint::CreateStatus, Reply::Status(status), times);
    }

    /// Fails the next `times` status posts to one deployment with `status`; the
    /// others are answered normally.
    pub fn fail_statuses_of(&self, deployment_id: i64, times: u32, status: u16) {
        lock(&self.state).scripts.push(Script {
            endpoint: Endpoint::CreateStatus,
            deployment: Some(deployment_id),
            reply: Reply::Status(status),
            remaining: times,
        });
    }

    /// Drops every scripted reply not used yet: normal answers from now on.
    pub fn clear_scripts(&self) {
        lock(&self.state).scripts.clear();
    }

    /// What `compare/{base}...{head}` answers (default: `ahead`, or `identical`
    /// when base and head are equal).
    pub fn set_compare(&self, repo: &str, base: &str, head: &str, status: &str) {
        lock(&self.state).compares.insert(
            format!("{}|{base}|{head}", repo.to_ascii_lowercase()),
            status.to_string(),
        );
    }

    /// Adds a deployment as if it had been created earlier (for history listings).
    pub fn seed_deployment(
        &self,
        repo: &str,
        git_ref: &str,
        environment: &str,
        creator: &str,
    ) -> i64 {
        let mut st = lock(&self.state);
        let sha = resolve(st.repos.get(&repo.to_ascii_lowercase()), git_ref);
        let id = st.next_deployment;
        st.next_deployment += 1;
        st.deployments.push(FakeDeployment {
            id,
            repo: repo.to_string(),
            sha,
            git_ref: git_ref.to_string(),
            task: "deploy".to_string(),
            environment: environment.to_string(),
            description: Some(format!("{creator} deploying {git_ref} to {environment}")),
            payload: json!({}),
            creator: creator.to_string(),
            created_at: Utc::now(),
            production_environment: environment == "production",
            transient_environment: false,
            body: Value::Null,
        });
        id
    }

    /// Adds a status to a deployment as if it had been posted.
    pub fn seed_status(&self, deployment_id: i64, state: &str) {
        let mut st = lock(&self.state);
        let id = st.next_status;
        st.next_status += 1;
        st.statuses.push(FakeDeploymentStatus {
            id,
            deployment_id,
            state: state.to_string(),
            log_url: None,
            environment_url: None,
            description: None,
            auto_inactive: None,
            created_at: Utc::now(),
            body: Value::Null,
        });
    }

    /// Every request so far, in order.
    pub fn requests(&self) -> Vec<Recorded> {
        lock(&self.state).requests.clone()
    }

    /// The requests with this method whose route (path without `/api/v3`) starts
    /// with `prefix`.
    pub fn requests_to(&self, method: &str, prefix: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == method && r.route.starts_with(prefix))
            .collect()
    }

    /// The deployments of a repository, oldest first.
    pub fn deployments(&self, repo: &str) -> Vec<FakeDeployment> {
        lock(&self.state)
            .deployments
            .iter()
            .filter(|d| d.repo.eq_ignore_ascii_case(repo))
            .cloned()
            .collect()
    }

    /// One deployment.
    pub fn deployment(&self, id: i64) -> Option<FakeDeployment> {
        lock(&self.state)
            .deployments
            .iter()
            .find(|d| d.id == id)
            .cloned()
    }

    /// The statuses posted to a deployment, in the order received.
    pub fn statuses(&self, deployment_id: i64) -> Vec<FakeDeploymentStatus> {
        lock(&self.state)
            .statuses
            .iter()
            .filter(|s| s.deployment_id == deployment_id)
            .cloned()
            .collect()
    }

    /// The states of the statuses posted to a deployment, in order.
    pub fn status_states(&self, deployment_id: i64) -> Vec<String> {
        self.statuses(deployment_id)
            .into_iter()
            .map(|s| s.state)
            .collect()
    }
}

impl Drop for FakeGitHub {
    fn drop(&mut self) {
        // Stops accepting; connections still open end with the test's runtime.
        self.task.abort();
    }
}

/// A sha derived from a ref name: stable, 40 hex digits, different per ref.
fn derived_sha(git_ref: &str) -> String {
    // FNV-1a, spread over five words: not cryptographic, just distinct and stable.
    let mut out = String::with_capacity(40);
    for round in 0u64..5 {
        let mut h: u64 = 0xcbf29ce484222325 ^ round;
        for b in git_ref.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x100000001b3);
        }
        out.push_str(&format!("{:08x}", h as u32));
    }
    out
}

fn resolve(repo: Option<&Repo>, git_ref: &str) -> String {
    if let Some(sha) = repo.and_then(|r| r.refs.get(git_ref)) {
        return sha.clone();
    }
    if git_ref.len() == 40 && git_ref.bytes().all(|b| b.is_ascii_hexdigit()) {
        return git_ref.to_ascii_lowercase();
    }
    derived_sha(git_ref)
}

fn now_rfc3339() -> String {
    rfc3339(Utc::now())
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex_digit(bytes[i + 1]), hex_digit(bytes[i + 2]))
        {
            out.push(h << 4 | l);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Who a request authenticates as.
enum Caller {
    Token,
    App(u64),
    Installation(i64),
}

async fn handle(
    axum::extract::State((state, base)): axum::extract::State<(Shared, String)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let (prefix, route) = match path.strip_prefix(GHE_PREFIX) {
        Some(rest) if rest.starts_with('/') => (GHE_PREFIX, rest.to_string()),
        _ => ("", path.clone()),
    };
    let recorded = Recorded {
        method: method.to_string(),
        path: path.clone(),
        route: route.clone(),
        query: uri.query().map(str::to_string),
        headers: headers
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: String::from_utf8_lossy(&body).into_owned(),
        json: serde_json::from_slice(&body).ok(),
        received_at: Instant::now(),
    };
    lock(&state).requests.push(recorded.clone());
    let api = format!("{base}{prefix}");
    let mut response = route_request(&state, &api, &base, &method, &route, &recorded, &headers);
    add_rate_limit_headers(response.headers_mut());
    if let Some(Hold(hold)) = response.extensions().get::<Hold>().copied() {
        tokio::time::sleep(hold).await;
    }
    response
}

/// Set on a response to hold it back this long ([`Reply::CreateThenHang`]).
#[derive(Debug, Clone, Copy)]
struct Hold(Duration);

fn route_request(
    state: &Shared,
    api: &str,
    base: &str,
    method: &Method,
    route: &str,
    req: &Recorded,
    headers: &HeaderMap,
) -> Response {
    let mut segments: Vec<String> = route
        .trim_matches('/')
        .split('/')
        .map(percent_decode)
        .collect();
    // `/repositories/{id}/...` is the same resource as `/repos/{owner}/{name}/...`:
    // GitHub's `Link` headers point there (the pagination guide's example is
    // `https://api.github.com/repositories/1300192/issues?page=2`,
    // https://docs.github.com/en/rest/using-the-rest-api/using-pagination-in-the-rest-api).
    if segments.first().map(String::as_str) == Some("repositories")
        && let Some(id) = segments.get(1).and_then(|id| id.parse::<i64>().ok())
    {
        let full_name = lock(state)
            .repos
            .values()
            .find(|r| r.id == id)
            .map(|r| r.full_name.clone());
        let Some(full_name) = full_name else {
            return github_error(StatusCode::NOT_FOUND, "Not Found");
        };
        let (owner, name) = full_name.split_once('/').unwrap_or((&full_name, ""));
        let mut rewritten = vec!["repos".to_string(), owner.to_string(), name.to_string()];
        rewritten.extend(segments.drain(2..));
        segments = rewritten;
    }
    let seg: Vec<&str> = segments.iter().map(String::as_str).collect();

    // The tarball host: no API rules.
    if let ["_codeload", ..] = seg.as_slice() {
        return (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/x-gzip")],
            "fake tarball\n",
        )
            .into_response();
    }

    if headers.get(header::USER_AGENT).is_none() {
        return github_error(
            StatusCode::FORBIDDEN,
            "Request forbidden by administrative rules. Please make sure your request has a User-Agent header (https://docs.github.com/en/rest/overview/resources-in-the-rest-api#user-agent-required). Check https://developer.github.com for other possible causes.",
        );
    }

    // "Create a GitHub App from a manifest": no authentication, the code is the
    // credential; 201 with the App's id, slug, pem, webhook_secret, client_id and
    // client_secret (among other fields), 404 for a code that is unknown, used or
    // expired (https://docs.github.com/en/rest/apps/apps#create-a-github-app-from-a-manifest).
    if let ("POST", ["app-manifests", code, "conversions"]) = (method.as_str(), seg.as_slice()) {
        let mut st = lock(state);
        let Some(app) = st.manifest_codes.remove(*code) else {
            return github_error(StatusCode::NOT_FOUND, "Not Found");
        };
        if !st.apps.contains(&app.id) {
            st.apps.push(app.id);
        }
        let now = Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true);
        return json_response(
            StatusCode::CREATED,
            &json!({
                "id": app.id,
                "slug": app.slug,
                "node_id": format!("MDM6QXBw{}", app.id),
                "owner": {"login": "example", "id": 1, "type": "Organization"},
                "name": app.slug,
                "description": "",
                "external_url": base,
                "html_url": format!("{base}/apps/{}", app.slug),
                "created_at": now,
                "updated_at": now,
                "permissions": {"metadata": "read", "deployments": "write"},
                "events": ["deployment"],
                "client_id": app.client_id,
                "client_secret": app.client_secret,
                "webhook_secret": app.webhook_secret,
                "pem": app.pem,
            }),
        );
    }

    let m = method.as_str();
    let endpoint = match (m, seg.as_slice()) {
        ("POST", ["repos", _, _, "deployments"]) => Endpoint::CreateDeployment,
        ("GET", ["repos", _, _, "deployments"]) => Endpoint::ListDeployments,
        ("POST", ["repos", _, _, "deployments", _, "statuses"]) => Endpoint::CreateStatus,
        ("GET", ["repos", _, _, "deployments", _, "statuses"]) => Endpoint::ListStatuses,
        ("GET", ["repos", _, _]) => Endpoint::GetRepo,
        ("GET", ["repos", _, _, "commits", .., "status"]) => Endpoint::CombinedStatus,
        ("GET", ["repos", _, _, "commits", .., "check-runs"]) => Endpoint::CheckRuns,
        ("GET", ["repos", _, _, "tarball", ..]) => Endpoint::Tarball,
        ("GET", ["repos", _, _, "installation"]) => Endpoint::Installation,
        ("GET", ["repos", _, _, "compare", ..]) => Endpoint::Compare,
        ("POST", ["app", "installations", _, "access_tokens"]) => Endpoint::AccessToken,
        _ => return github_error(StatusCode::NOT_FOUND, "Not Found"),
    };
    let app_endpoint = matches!(endpoint, Endpoint::Installation | Endpoint::AccessToken);

    // Credentials first, as GitHub checks them before anything else.
    let caller = match authenticate(state, headers, app_endpoint) {
        Ok(caller) => caller,
        Err(message) => return github_error(StatusCode::UNAUTHORIZED, &message),
    };

    if let Some(limited) = check_write_rate(state, method, headers) {
        return limited;
    }

    let deployment_in_path = match seg.as_slice() {
        ["repos", _, _, "deployments", id, ..] => id.parse::<i64>().ok(),
        _ => None,
    };
    let after = match take_script(state, endpoint, deployment_in_path) {
        Some(reply @ (Reply::CreateThenFail(_) | Reply::CreateThenHang(_)))
            if endpoint == Endpoint::CreateDeployment =>
        {
            Some(reply)
        }
        Some(reply) => return scripted(reply),
        None => None,
    };
    let response = dispatch(state, api, base, endpoint, &caller, &seg, req);
    match after {
        // The deployment exists now; the client hears a server error. GitHub's 5xx
        // do not say whether the work was done: clients must check before retrying.
        Some(Reply::CreateThenFail(code)) if response.status() == StatusCode::CREATED => {
            scripted(Reply::Status(code))
        }
        Some(Reply::CreateThenHang(hold)) => {
            let mut response = response;
            response.extensions_mut().insert(Hold(hold));
            response
        }
        _ => response,
    }
}

/// The answer for an authenticated request to `endpoint`.
fn dispatch(
    state: &Shared,
    api: &str,
    base: &str,
    endpoint: Endpoint,
    caller: &Caller,
    seg: &[&str],
    req: &Recorded,
) -> Response {
    match (endpoint, seg) {
        (Endpoint::Installation, ["repos", owner, name, _]) => {
            installation_for_repo(state, api, caller, &format!("{owner}/{name}"))
        }
        (Endpoint::AccessToken, ["app", "installations", id, _]) => access_token(state, caller, id),
        (_, ["repos", owner, name, rest @ ..]) => {
            let repo = format!("{owner}/{name}").to_ascii_lowercase();
            if let Some(refused) = check_repo_access(state, caller, &repo) {
                return refused;
            }
            match (endpoint, rest) {
                (Endpoint::GetRepo, []) => get_repo(state, api, &repo),
                (Endpoint::CreateDeployment, _) => create_deployment(state, api, &repo, req),
                (Endpoint::ListDeployments, _) => list_deployments(state, api, &repo, req),
                (Endpoint::CreateStatus, ["deployments", id, _]) => {
                    create_status(state, api, &repo, id, req)
                }
                (Endpoint::ListStatuses, ["deployments", id, _]) => {
                    list_statuses(state, api, &repo, id, req)
                }
                (Endpoint::CombinedStatus, ["commits", git_ref @ .., _]) => {
                    combined_status(state, api, &repo, &git_ref.join("/"), req)
                }
                (Endpoint::CheckRuns, ["commits", git_ref @ .., _]) => {
                    check_runs(state, api, &repo, &git_ref.join("/"), req)
                }
                (Endpoint::Tarball, ["tarball", sha @ ..]) => {
                    tarball(state, base, &repo, &sha.join("/"))
                }
                (Endpoint::Compare, ["compare", spec @ ..]) => {
                    let spec = spec.join("/");
                    let Some((b, h)) = spec.split_once("...") else {
                        return github_error(StatusCode::NOT_FOUND, "Not Found");
                    };
                    let st = lock(state);
                    let status = st
                        .compares
                        .get(&format!("{repo}|{b}|{h}"))
                        .cloned()
                        .unwrap_or_else(|| {
                            if b == h {
                                "identical".into()
                            } else {
                                "ahead".into()
                            }
                        });
                    json_response(
                        StatusCode::OK,
                        &json!({"status": status, "ahead_by": 1, "behind_by": 0}),
                    )
                }
                _ => github_error(StatusCode::NOT_FOUND, "Not Found"),
            }
        }
        _ => github_error(StatusCode::NOT_FOUND, "Not Found"),
    }
}

/// With [`FakeGitHub::limit_write_rate`]: GitHub's secondary rate limit for a write
/// that follows the previous one on the same credentials too closely. GitHub answers
/// "403 or 429 ... and an error message that indicates that you exceeded a secondary
/// rate limit", with `Retry-After` when it says how long to wait
/// (<https://docs.github.com/en/rest/using-the-rest-api/rate-limits-for-the-rest-api#exceeding-the-secondary-rate-limit>).
fn check_write_rate(state: &Shared, method: &Method, headers: &HeaderMap) -> Option<Response> {
    let write = matches!(
        *method,
        Method::POST | Method::PATCH | Method::PUT | Method::DELETE
    );
    if !write {
        return None;
    }
    let credential = headers
        .get(header::AUTHORIZATION)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default();
    let mut st = lock(state);
    let gap = st.write_gap?;
    let now = Instant::now();
    // Every write counts, refused or not: GitHub keeps counting while a client is
    // limited.
    let previous = st.last_write.insert(credential, now)?;
    let since = now.duration_since(previous);
    if since >= gap {
        return None;
    }
    let wait = (gap - since).as_secs_f64().ceil().max(1.0) as u64;
    Some(scripted(Reply::SecondaryRateLimit {
        retry_after_secs: wait,
    }))
}

fn take_script(state: &Shared, endpoint: Endpoint, deployment: Option<i64>) -> Option<Reply> {
    let mut st = lock(state);
    let index = st.scripts.iter().position(|s| {
        s.remaining > 0
            && (s.endpoint == endpoint || s.endpoint == Endpoint::Any)
            && (s.deployment.is_none() || s.deployment == deployment)
    })?;
    let script = &mut st.scripts[index];
    script.remaining -= 1;
    let reply = script.reply.clone();
    if script.remaining == 0 {
        st.scripts.remove(index);
    }
    Some(reply)
}

fn scripted(reply: Reply) -> Response {
    match reply {
        Reply::AutoMerged => json_response(
            StatusCode::ACCEPTED,
            &json!({"message": "Auto-merged master into topic-branch on deploy."}),
        ),
        Reply::FailingContexts(contexts) => json_response(
            StatusCode::CONFLICT,
            &json!({
                "message": "Conflict: Commit status checks failed for topic-branch.",
                "errors": [{
                    "contexts": contexts.iter().map(|(c, s)| json!({"context": c, "state": s})).collect::<Vec<_>>(),
                    "resource": "Deployment",
                    "field": "required_contexts",
                    "code": "invalid",
                }],
                "documentation_url": "https://docs.github.com/rest/deployments/deployments#create-a-deployment",
            }),
        ),
        Reply::MergeConflict => json_response(
            StatusCode::CONFLICT,
            &json!({
                "message": "Conflict merging master into topic-branch.",
                "documentation_url": "https://docs.github.com/rest/deployments/deployments#create-a-deployment",
            }),
        ),
        Reply::Unauthorized => github_error(StatusCode::UNAUTHORIZED, "Bad credentials"),
        Reply::Forbidden => {
            let mut r = github_error(
                StatusCode::FORBIDDEN,
                "Resource not accessible by personal access token",
            );
            r.headers_mut().insert(
                "x-accepted-github-permissions",
                HeaderValue::from_static("deployments=write"),
            );
            r
        }
        Reply::NotFound => github_error(StatusCode::NOT_FOUND, "Not Found"),
        Reply::Status(code) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let message = match code {
                500 => "Server Error",
                502 => "Server Error: Bad Gateway",
                503 => "Service Unavailable",
                422 => "Validation Failed",
                _ => status.canonical_reason().unwrap_or("Error"),
            };
            github_error(status, message)
        }
        Reply::RateLimited { reset_in_secs } => {
            let mut r = github_error(
                StatusCode::FORBIDDEN,
                "API rate limit exceeded for user ID 1. If you reach out to GitHub Support for help, please include the request ID.",
            );
            let reset = Utc::now().timestamp() + reset_in_secs as i64;
            r.headers_mut()
                .insert("x-ratelimit-remaining", HeaderValue::from(0));
            r.headers_mut()
                .insert("x-ratelimit-reset", HeaderValue::from(reset));
            r
        }
        // GitHub documents both answers to a secondary rate limit, 403 and 429, with
        // `Retry-After` when it says how long to wait, and this message
        // (https://docs.github.com/en/rest/using-the-rest-api/rate-limits-for-the-rest-api#exceeding-the-secondary-rate-limit).
        Reply::SecondaryRateLimit { retry_after_secs } => {
            let mut r = github_error(
                StatusCode::FORBIDDEN,
                "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
            r
        }
        Reply::TooManyRequests { retry_after_secs } => {
            let mut r = github_error(StatusCode::TOO_MANY_REQUESTS, "Too many requests");
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
            r
        }
        // Scripted on another endpoint than a create: the failure alone.
        Reply::CreateThenFail(code) => scripted(Reply::Status(code)),
        Reply::CreateThenHang(_) => github_error(StatusCode::GATEWAY_TIMEOUT, "Timeout"),
    }
}

/// Checks the `Authorization` header: the token or a live installation token for
/// repository endpoints, an App JWT for App endpoints.
fn authenticate(state: &Shared, headers: &HeaderMap, app_endpoint: bool) -> Result<Caller, String> {
    let value = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let credential = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .or_else(|| value.strip_prefix("token "))
        .map(str::trim);
    let Some(credential) = credential.filter(|c| !c.is_empty()) else {
        return Err("Requires authentication".to_string());
    };
    if app_endpoint {
        return check_jwt(state, credential).map(Caller::App);
    }
    let st = lock(state);
    if credential == st.token {
        return Ok(Caller::Token);
    }
    if let Some(t) = st.tokens.get(credential)
        && !t.revoked
        && t.expires_at > Utc::now()
    {
        return Ok(Caller::Installation(t.installation));
    }
    Err("Bad credentials".to_string())
}

/// A well-formed RS256 JWT whose `iss` is a known App, issued at most a minute in the
/// future and expiring within ten minutes (GitHub's rules). The signature is checked
/// for shape (256 bytes for a 2048-bit key), not verified: no RSA crate here.
fn check_jwt(state: &Shared, jwt: &str) -> Result<u64, String> {
    let parts: Vec<&str> = jwt.split('.').collect();
    let [header_b64, claims_b64, signature_b64] = parts.as_slice() else {
        return Err("A JSON web token could not be decoded".to_string());
    };
    let decode_json =
        |s: &str| -> Option<Value> { serde_json::from_slice(&base64url_decode(s)?).ok() };
    let header = decode_json(header_b64)
        .ok_or_else(|| "A JSON web token could not be decoded".to_string())?;
    if header.get("alg").and_then(Value::as_str) != Some("RS256") {
        return Err("'Algorithm' must be RS256".to_string());
    }
    let claims = decode_json(claims_b64)
        .ok_or_else(|| "A JSON web token could not be decoded".to_string())?;
    let signature = base64url_decode(signature_b64)
        .ok_or_else(|| "A JSON web token could not be decoded".to_string())?;
    if signature.len() < 128 {
        return Err("A JSON web token could not be decoded".to_string());
    }
    let iss = match claims.get("iss") {
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => s.parse().ok(),
        _ => None,
    }
    .ok_or_else(|| "'Issuer' claim ('iss') must be an Integer".to_string())?;
    let now = Utc::now().timestamp();
    let iat = claims
        .get("iat")
        .and_then(Value::as_i64)
        .unwrap_or(i64::MAX);
    let exp = claims.get("exp").and_then(Value::as_i64).unwrap_or(0);
    if iat > now + 60 {
        return Err(
            "'Issued at' claim ('iat') must be an Integer representing a time in the past"
                .to_string(),
        );
    }
    if exp <= now || exp - iat > 11 * 60 {
        return Err("'Expiration time' claim ('exp') is too far in the future".to_string());
    }
    if !lock(state).apps.contains(&iss) {
        return Err(format!("Integration not found (iss {iss})"));
    }
    Ok(iss)
}

fn base64url_decode(s: &str) -> Option<Vec<u8>> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' | b'+' => 62,
            b'_' | b'/' => 63,
            _ => return None,
        } as u32)
    };
    let clean: Vec<u8> = s.bytes().filter(|&c| c != b'=').collect();
    let mut out = Vec::with_capacity(clean.len() * 3 / 4);
    for chunk in clean.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= value(c)? << (18 - 6 * i);
        }
        let bytes = n.to_be_bytes();
        let take = match chunk.len() {
            4 => 3,
            3 => 2,
            2 => 1,
            _ => return None,
        };
        out.extend_from_slice(&bytes[1..1 + take]);
    }
    Some(out)
}

/// 404 for a repository that does not exist or that the caller cannot reach.
fn check_repo_access(state: &Shared, caller: &Caller, repo: &str) -> Option<Response> {
    let st = lock(state);
    if !st.repos.contains_key(repo) {
        return Some(github_error(StatusCode::NOT_FOUND, "Not Found"));
    }
    match caller {
        Caller::Token => None,
        Caller::Installation(id) => {
            let covered = st
                .installations
                .get(id)
                .is_some_and(|i| i.repos.iter().any(|r| r == repo));
            (!covered).then(|| github_error(StatusCode::NOT_FOUND, "Not Found"))
        }
        // A JWT only reaches App endpoints.
        Caller::App(_) => Some(github_error(
            StatusCode::UNAUTHORIZED,
            "A JSON web token could not be decoded",
        )),
    }
}

fn installation_for_repo(state: &Shared, api: &str, caller: &Caller, repo: &str) -> Response {
    let Caller::App(app_id) = caller else {
        return github_error(
            StatusCode::UNAUTHORIZED,
            "A JSON web token could not be decoded",
        );
    };
    let st = lock(state);
    let key = repo.to_ascii_lowercase();
    let found = st
        .installations
        .iter()
        .find(|(_, i)| i.app_id == *app_id && i.repos.contains(&key));
    let Some((id, _)) = found else {
        return github_error(StatusCode::NOT_FOUND, "Not Found");
    };
    let owner = repo.split('/').next().unwrap_or_default();
    json_response(
        StatusCode::OK,
        &json!({
            "id": id,
            "account": user_json(owner),
            "repository_selection": "selected",
            "access_tokens_url": format!("{api}/app/installations/{id}/access_tokens"),
            "repositories_url": format!("{api}/installation/repositories"),
            "html_url": format!("https://github.com/organizations/{owner}/settings/installations/{id}"),
            "app_id": app_id,
            "app_slug": "chima",
            "target_id": 1,
            "target_type": "Organization",
            "permissions": {"deployments": "write", "metadata": "read", "contents": "read", "statuses": "read", "checks": "read"},
            "events": ["deployment"],
            "created_at": "2026-01-01T00:00:00Z",
            "updated_at": "2026-01-01T00:00:00Z",
            "single_file_name": null,
            "suspended_at": null,
            "suspended_by": null,
        }),
    )
}

fn access_token(state: &Shared, caller: &Caller, id: &str) -> Response {
    let Caller::App(app_id) = caller else {
        return github_error(
            StatusCode::UNAUTHORIZED,
            "A JSON web token could not be decoded",
        );
    };
    let Ok(id) = id.parse::<i64>() else {
        return github_error(StatusCode::NOT_FOUND, "Not Found");
    };
    let mut st = lock(state);
    if st
        .installations
        .get(&id)
        .is_none_or(|i| i.app_id != *app_id)
    {
        return github_error(StatusCode::NOT_FOUND, "Not Found");
    }
    st.tokens_issued += 1;
    let token = format!("ghs_testkitInstallation{id}x{:06}", st.tokens_issued);
    let lifetime = chrono::Duration::from_std(st.token_lifetime).unwrap_or_default();
    let expires_at = Utc::now() + lifetime;
    st.tokens.insert(
        token.clone(),
        IssuedToken {
            installation: id,
            expires_at,
            revoked: false,
        },
    );
    json_response(
        StatusCode::CREATED,
        &json!({
            "token": token,
            "expires_at": rfc3339(expires_at),
            "permissions": {"deployments": "write", "metadata": "read", "contents": "read"},
            "repository_selection": "selected",
        }),
    )
}

fn get_repo(state: &Shared, api: &str, repo: &str) -> Response {
    let st = lock(state);
    match st.repos.get(repo) {
        Some(r) => json_response(StatusCode::OK, &repo_json(r, api)),
        None => github_error(StatusCode::NOT_FOUND, "Not Found"),
    }
}

fn create_deployment(state: &Shared, api: &str, repo: &str, req: &Recorded) -> Response {
    let Some(body) = req.json.clone().filter(Value::is_object) else {
        return github_error(StatusCode::BAD_REQUEST, "Problems parsing JSON");
    };
    let Some(git_ref) = body.get("ref").and_then(Value::as_str).map(str::to_string) else {
        return validation_failed(
            "Deployment",
            "ref",
            "missing_field",
            "\"ref\" wasn't supplied.",
        );
    };
    let mut st = lock(state);
    let Some(r) = st.repos.get(repo) else {
        return github_error(StatusCode::NOT_FOUND, "Not Found");
    };
    let sha = resolve(Some(r), &git_ref);
    let full_name = r.full_name.clone();

    // Required contexts, as GitHub checks them: "If you omit this parameter, GitHub
    // verifies all unique contexts before creating a deployment"; an empty list skips
    // the check (https://docs.github.com/en/rest/deployments/deployments#create-a-deployment).
    // A context is a commit status context or a check run name: GitHub counts check
    // runs too, so a failing GitHub Actions job refuses the deployment (409).
    let contexts = contexts_of(r, &git_ref);
    let required: Option<Vec<String>> = body.get("required_contexts").and_then(|v| {
        v.as_array().map(|a| {
            a.iter()
                .filter_map(|c| c.as_str().map(str::to_string))
                .collect()
        })
    });
    let considered: Vec<(String, String)> = match &required {
        Some(names) => names
            .iter()
            .map(|n| {
                let state = contexts
                    .iter()
                    .filter(|(c, _)| c == n)
                    .map(|(_, s)| s.clone())
                    .reduce(|worst, s| if s == "success" { worst } else { s })
                    .unwrap_or_else(|| "missing".to_string());
                (n.clone(), state)
            })
            .collect(),
        None => contexts,
    };
    if considered.iter().any(|(_, s)| s != "success") {
        return json_response(
            StatusCode::CONFLICT,
            &json!({
                "message": format!("Conflict: Commit status checks failed for {git_ref}."),
                "errors": [{
                    "contexts": considered.iter().filter(|(_, s)| s != "success").map(|(c, s)| json!({"context": c, "state": s})).collect::<Vec<_>>(),
                    "resource": "Deployment",
                    "field": "required_contexts",
                    "code": "invalid",
                }],
                "documentation_url": "https://docs.github.com/rest/deployments/deployments#create-a-deployment",
            }),
        );
    }

    let environment = body
        .get("environment")
        .and_then(Value::as_str)
        .unwrap_or("production")
        .to_string();
    let id = st.next_deployment;
    st.next_deployment += 1;
    let deployment = FakeDeployment {
        id,
        repo: full_name,
        sha,
        git_ref,
        task: body
            .get("task")
            .and_then(Value::as_str)
            .unwrap_or("deploy")
            .to_string(),
        production_environment: body
            .get("production_environment")
            .and_then(Value::as_bool)
            .unwrap_or(environment == "production"),
        transient_environment: body
            .get("transient_environment")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        environment,
        description: body
            .get("description")
            .and_then(Value::as_str)
            .map(str::to_string),
        payload: match body.get("payload") {
            None | Some(Value::Null) => json!({}),
            Some(p) => p.clone(),
        },
        creator: TOKEN_LOGIN.to_string(),
        created_at: Utc::now(),
        body,
    };
    let out = deployment_json(&deployment, api);
    st.deployments.push(deployment);
    json_response(StatusCode::CREATED, &out)
}

fn list_deployments(state: &Shared, api: &str, repo: &str, req: &Recorded) -> Response {
    let st = lock(state);
    let Some(r) = st.repos.get(repo) else {
        return github_error(StatusCode::NOT_FOUND, "Not Found");
    };
    let filter = |name: &str| req.query_param(name).map(|v| percent_decode(&v));
    let (sha, git_ref, task, env) = (
        filter("sha"),
        filter("ref"),
        filter("task"),
        filter("environment"),
    );
    let (per_page, page) = paging(req);
    let matching: Vec<&FakeDeployment> = st
        .deployments
        .iter()
        .rev()
        .filter(|d| d.repo.eq_ignore_ascii_case(repo))
        .filter(|d| sha.as_ref().is_none_or(|s| &d.sha == s))
        .filter(|d| git_ref.as_ref().is_none_or(|r| &d.git_ref == r))
        .filter(|d| task.as_ref().is_none_or(|t| &d.task == t))
        .filter(|d| env.as_ref().is_none_or(|e| &d.environment == e))
        .collect();
    let list: Vec<Value> = matching
        .iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .map(|d| deployment_json(d, api))
        .collect();
    let url = format!("{api}/repositories/{}/deployments", r.id);
    paged_response(&Value::Array(list), &url, req, matching.len())
}

/// A page of a list as GitHub answers it: 200, the JSON, and the `Link` header to the
/// other pages when there are more than one.
fn paged_response(body: &Value, url: &str, req: &Recorded, total: usize) -> Response {
    let mut response = json_response(StatusCode::OK, body);
    if let Some(link) = link_header(url, req, total) {
        response.headers_mut().insert(header::LINK, link);
    }
    response
}

/// GitHub's `Link` header for the page `req` asked of a list of `total` entries at
/// `url`: `<url?per_page=N&page=2>; rel="next", <...>; rel="last"`, and `first` and
/// `prev` after page 1, keeping the request's other query parameters; no header when
/// everything fits on one page. Clients are to follow `rel="next"` rather than build
/// page URLs (https://docs.github.com/en/rest/using-the-rest-api/using-pagination-in-the-rest-api).
fn link_header(url: &str, req: &Recorded, total: usize) -> Option<HeaderValue> {
    let (per_page, page) = paging(req);
    let pages = total.div_ceil(per_page).max(1);
    if pages == 1 && page == 1 {
        return None;
    }
    let kept: Vec<&str> = req
        .query
        .as_deref()
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty() && !p.starts_with("page=") && !p.starts_with("per_page="))
        .collect();
    let at = |n: usize| {
        let mut params = kept.clone();
        let per_page = format!("per_page={per_page}");
        let page = format!("page={n}");
        params.push(&per_page);
        params.push(&page);
        format!("<{url}?{}>", params.join("&"))
    };
    let mut parts = Vec::new();
    if page < pages {
        parts.push(format!("{}; rel=\"next\"", at(page + 1)));
        parts.push(format!("{}; rel=\"last\"", at(pages)));
    }
    if page > 1 {
        parts.push(format!("{}; rel=\"first\"", at(1)));
        parts.push(format!("{}; rel=\"prev\"", at((page - 1).min(pages))));
    }
    HeaderValue::from_str(&parts.join(", ")).ok()
}

/// Percent-encodes one path segment, as GitHub writes a ref into its links.
fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// What a ref's commit carries in `map` (statuses or check runs): those set for the
/// ref, else those set for another ref on the same commit (GitHub keeps both per
/// commit, not per ref).
fn of_commit<T: Clone>(r: &Repo, map: &HashMap<String, Vec<T>>, git_ref: &str) -> Vec<T> {
    if let Some(v) = map.get(git_ref) {
        return v.clone();
    }
    let sha = resolve(Some(r), git_ref);
    map.iter()
        .find(|(k, _)| resolve(Some(r), k) == sha)
        .map(|(_, v)| v.clone())
        .unwrap_or_default()
}

/// Every context of a ref's commit and its state: commit statuses as they are, check
/// runs as `success` (completed: success, neutral, skipped), `failure` (completed
/// otherwise) or `pending` (not completed).
fn contexts_of(r: &Repo, git_ref: &str) -> Vec<(String, String)> {
    let statuses = of_commit(r, &r.statuses, git_ref)
        .into_iter()
        .map(|s| (s.context, s.state));
    let checks = of_commit(r, &r.checks, git_ref).into_iter().map(|c| {
        let state = match (c.status.as_str(), c.conclusion.as_deref()) {
            ("completed", Some("success" | "neutral" | "skipped")) => "success",
            ("completed", _) => "failure",
            _ => "pending",
        };
        (c.name, state.to_string())
    });
    statuses.chain(checks).collect()
}

/// `per_page` (30 unless asked, at most 100) and `page` (from 1) of a list request, as
/// GitHub reads them (https://docs.github.com/en/rest/using-the-rest-api/using-pagination-in-the-rest-api).
fn paging(req: &Recorded) -> (usize, usize) {
    let per_page = req
        .query_param("per_page")
        .and_then(|v| v.parse().ok())
        .unwrap_or(30usize)
        .clamp(1, 100);
    let page = req
        .query_param("page")
        .and_then(|v| v.parse().ok())
        .unwrap_or(1usize)
        .max(1);
    (per_page, page)
}

fn find_deployment<'a>(st: &'a State, repo: &str, id: &str) -> Option<&'a FakeDeployment> {
    let id: i64 = id.parse().ok()?;
    st.deployments
        .iter()
        .find(|d| d.id == id && d.repo.eq_ignore_ascii_case(repo))
}

const STATUS_STATES: [&str; 7] = [
    "error",
    "failure",
    "inactive",
    "in_progress",
    "queued",
    "pending",
    "success",
];

fn create_status(state: &Shared, api: &str, repo: &str, id: &str, req: &Recorded) -> Response {
    let Some(body) = req.json.clone().filter(Value::is_object) else {
        return github_error(StatusCode::BAD_REQUEST, "Problems parsing JSON");
    };
    let mut st = lock(state);
    let Some(deployment) = find_deployment(&st, repo, id).cloned() else {
        return github_error(StatusCode::NOT_FOUND, "Not Found");
    };
    let status_state = body
        .get("state")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if !STATUS_STATES.contains(&status_state.as_str()) {
        return validation_failed(
            "DeploymentStatus",
            "state",
            "custom",
            "state is not included in the list",
        );
    }
    let text = |k: &str| body.get(k).and_then(Value::as_str).map(str::to_string);
    let description = text("description");
    if description
        .as_ref()
        .is_some_and(|d| d.chars().count() > 140)
    {
        return validation_failed(
            "DeploymentStatus",
            "description",
            "custom",
            "description is too long (maximum is 140 characters)",
        );
    }
    let status_id = st.next_status;
    st.next_status += 1;
    let status = FakeDeploymentStatus {
        id: status_id,
        deployment_id: deployment.id,
        state: status_state,
        log_url: text("log_url").or_else(|| text("target_url")),
        environment_url: text("environment_url"),
        description,
        auto_inactive: body.get("auto_inactive").and_then(Value::as_bool),
        created_at: Utc::now(),
        body,
    };
    let out = status_json(&status, &deployment, api);
    st.statuses.push(status);
    json_response(StatusCode::CREATED, &out)
}

fn list_statuses(state: &Shared, api: &str, repo: &str, id: &str, req: &Recorded) -> Response {
    let st = lock(state);
    let Some(deployment) = find_deployment(&st, repo, id) else {
        return github_error(StatusCode::NOT_FOUND, "Not Found");
    };
    let (per_page, page) = paging(req);
    let all: Vec<&FakeDeploymentStatus> = st
        .statuses
        .iter()
        .rev()
        .filter(|s| s.deployment_id == deployment.id)
        .collect();
    let list: Vec<Value> = all
        .iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .map(|s| status_json(s, deployment, api))
        .collect();
    let repo_id = st.repos.get(repo).map_or(0, |r| r.id);
    let url = format!(
        "{api}/repositories/{repo_id}/deployments/{}/statuses",
        deployment.id
    );
    paged_response(&Value::Array(list), &url, req, all.len())
}

/// `GET /repos/{o}/{r}/commits/{ref}/status`: the combined state over every context,
/// and the statuses paged ("This field paginates if there are over 100 contexts",
/// `per_page` 30 by default, at most 100), with `total_count` and a `Link` header
/// (https://docs.github.com/en/rest/commits/statuses#get-the-combined-status-for-a-specific-reference).
fn combined_status(
    state: &Shared,
    api: &str,
    repo: &str,
    git_ref: &str,
    req: &Recorded,
) -> Response {
    let st = lock(state);
    let Some(r) = st.repos.get(repo) else {
        return github_error(StatusCode::NOT_FOUND, "Not Found");
    };
    let sha = resolve(Some(r), git_ref);
    let statuses = of_commit(r, &r.statuses, git_ref);
    let (per_page, page) = paging(req);
    let combined = if statuses
        .iter()
        .any(|s| s.state == "failure" || s.state == "error")
    {
        "failure"
    } else if statuses.is_empty() || statuses.iter().any(|s| s.state == "pending") {
        "pending"
    } else {
        "success"
    };
    let items: Vec<Value> = statuses
        .iter()
        .enumerate()
        .skip((page - 1) * per_page)
        .take(per_page)
        .map(|(i, s)| {
            json!({
                "url": format!("{api}/repos/{}/statuses/{sha}", r.full_name),
                "avatar_url": "https://github.com/images/error/hubot_happy.gif",
                "id": 700 + i,
                "node_id": format!("MDY6U3RhdHVz{i}"),
                "state": s.state,
                "description": s.description,
                "target_url": s.target_url,
                "context": s.context,
                "created_at": now_rfc3339(),
                "updated_at": now_rfc3339(),
            })
        })
        .collect();
    let url = format!(
        "{api}/repositories/{}/commits/{}/status",
        r.id,
        encode_segment(git_ref)
    );
    paged_response(
        &json!({
            "state": combined,
            "statuses": items,
            "sha": sha,
            "total_count": statuses.len(),
            "repository": repo_json(r, api),
            "commit_url": format!("{api}/repos/{}/commits/{sha}", r.full_name),
            "url": format!("{api}/repos/{}/commits/{sha}/status", r.full_name),
        }),
        &url,
        req,
        statuses.len(),
    )
}

/// `GET /repos/{o}/{r}/commits/{ref}/check-runs`: paged (`per_page` 30 by default, at
/// most 100) with `total_count` over all pages and a `Link` header
/// (https://docs.github.com/en/rest/checks/runs#list-check-runs-for-a-git-reference).
fn check_runs(state: &Shared, api: &str, repo: &str, git_ref: &str, req: &Recorded) -> Response {
    let st = lock(state);
    let Some(r) = st.repos.get(repo) else {
        return github_error(StatusCode::NOT_FOUND, "Not Found");
    };
    let sha = resolve(Some(r), git_ref);
    let runs = of_commit(r, &r.checks, git_ref);
    let (per_page, page) = paging(req);
    let items: Vec<Value> = runs
        .iter()
        .enumerate()
        .skip((page - 1) * per_page)
        .take(per_page)
        .map(|(i, c)| {
            json!({
                "id": 900 + i,
                "head_sha": sha,
                "node_id": format!("MDg6Q2hlY2tSdW4{i}"),
                "external_id": "",
                "url": format!("https://api.github.com/repos/{}/check-runs/{}", r.full_name, 900 + i),
                "html_url": c.html_url,
                "details_url": c.html_url,
                "status": c.status,
                "conclusion": c.conclusion,
                "started_at": now_rfc3339(),
                "completed_at": if c.status == "completed" { Value::from(now_rfc3339()) } else { Value::Null },
                "output": {"title": null, "summary": null, "text": null, "annotations_count": 0, "annotations_url": ""},
                "name": c.name,
                "check_suite": {"id": 5},
                "app": {"id": 15368, "slug": "github-actions", "name": "GitHub Actions"},
                "pull_requests": [],
            })
        })
        .collect();
    let url = format!(
        "{api}/repositories/{}/commits/{}/check-runs",
        r.id,
        encode_segment(git_ref)
    );
    paged_response(
        &json!({"total_count": runs.len(), "check_runs": items}),
        &url,
        req,
        runs.len(),
    )
}

fn tarball(state: &Shared, base: &str, repo: &str, sha: &str) -> Response {
    let st = lock(state);
    let Some(r) = st.repos.get(repo) else {
        return github_error(StatusCode::NOT_FOUND, "Not Found");
    };
    let location = format!(
        "{base}/_codeload/{}/legacy.tar.gz/{sha}?token=AAAAtestkitCODELOAD",
        r.full_name
    );
    let mut response = StatusCode::FOUND.into_response();
    if let Ok(v) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    response
}

fn user_json(login: &str) -> Value {
    let u = format!("https://api.github.com/users/{login}");
    json!({
        "login": login,
        "id": 1000 + login.len() as i64,
        "node_id": "MDQ6VXNlcjE=",
        "avatar_url": "https://avatars.githubusercontent.com/u/1?v=4",
        "gravatar_id": "",
        "url": u,
        "html_url": format!("https://github.com/{login}"),
        "followers_url": format!("{u}/followers"),
        "following_url": format!("{u}/following{{/other_user}}"),
        "gists_url": format!("{u}/gists{{/gist_id}}"),
        "starred_url": format!("{u}/starred{{/owner}}{{/repo}}"),
        "subscriptions_url": format!("{u}/subscriptions"),
        "organizations_url": format!("{u}/orgs"),
        "repos_url": format!("{u}/repos"),
        "events_url": format!("{u}/events{{/privacy}}"),
        "received_events_url": format!("{u}/received_events"),
        "type": "User",
        "site_admin": false,
    })
}

fn repo_json(r: &Repo, api: &str) -> Value {
    let owner = r.full_name.split('/').next().unwrap_or_default();
    let name = r.full_name.split('/').nth(1).unwrap_or_default();
    json!({
        "id": r.id,
        "node_id": format!("MDEwOlJlcG9zaXRvcnk{}", r.id),
        "name": name,
        "full_name": r.full_name,
        "private": r.private,
        "owner": user_json(owner),
        "html_url": format!("https://github.com/{}", r.full_name),
        "description": null,
        "fork": false,
        "url": format!("{api}/repos/{}", r.full_name),
        "clone_url": format!("https://github.com/{}.git", r.full_name),
        "git_url": format!("git://github.com/{}.git", r.full_name),
        "ssh_url": format!("git@github.com:{}.git", r.full_name),
        "default_branch": r.default_branch,
        "visibility": if r.private { "private" } else { "public" },
        "archived": false,
        "disabled": false,
        "created_at": "2026-01-01T00:00:00Z",
        "updated_at": "2026-01-01T00:00:00Z",
        "pushed_at": "2026-01-01T00:00:00Z",
    })
}

fn deployment_json(d: &FakeDeployment, api: &str) -> Value {
    let url = format!("{api}/repos/{}/deployments/{}", d.repo, d.id);
    json!({
        "url": url,
        "id": d.id,
        "node_id": format!("MDEwOkRlcGxveW1lbnQ{}", d.id),
        "sha": d.sha,
        "ref": d.git_ref,
        "task": d.task,
        "payload": d.payload,
        "original_environment": d.environment,
        "environment": d.environment,
        "description": d.description,
        "creator": user_json(&d.creator),
        "created_at": rfc3339(d.created_at),
        "updated_at": rfc3339(d.created_at),
        "statuses_url": format!("{url}/statuses"),
        "repository_url": format!("{api}/repos/{}", d.repo),
        "transient_environment": d.transient_environment,
        "production_environment": d.production_environment,
        "performed_via_github_app": null,
    })
}

fn status_json(s: &FakeDeploymentStatus, d: &FakeDeployment, api: &str) -> Value {
    let deployment_url = format!("{api}/repos/{}/deployments/{}", d.repo, d.id);
    json!({
        "url": format!("{deployment_url}/statuses/{}", s.id),
        "id": s.id,
        "node_id": format!("MDE2OkRlcGxveW1lbnRTdGF0dXM{}", s.id),
        "state": s.state,
        "creator": user_json(TOKEN_LOGIN),
        "description": s.description.clone().unwrap_or_default(),
        "environment": d.environment,
        "target_url": s.log_url.clone().unwrap_or_default(),
        "log_url": s.log_url.clone().unwrap_or_default(),
        "environment_url": s.environment_url.clone().unwrap_or_default(),
        "created_at": rfc3339(s.created_at),
        "updated_at": rfc3339(s.created_at),
        "deployment_url": deployment_url,
        "repository_url": format!("{api}/repos/{}", d.repo),
        "performed_via_github_app": null,
    })
}

fn add_rate_limit_headers(headers: &mut HeaderMap) {
    let reset = Utc::now().timestamp() + 3600;
    let defaults = [
        ("x-ratelimit-limit", HeaderValue::from(5000)),
        ("x-ratelimit-remaining", HeaderValue::from(4999)),
        ("x-ratelimit-reset", HeaderValue::from(reset)),
        ("x-ratelimit-used", HeaderValue::from(1)),
        ("x-ratelimit-resource", HeaderValue::from_static("core")),
        (
            "x-github-media-type",
            HeaderValue::from_static("github.v3; format=json"),
        ),
    ];
    for (name, value) in defaults {
        if !headers.contains_key(name) {
            headers.insert(name, value);
        }
    }
}

fn validation_failed(resource: &str, field: &str, code: &str, message: &str) -> Response {
    json_response(
        StatusCode::UNPROCESSABLE_ENTITY,
        &json!({
            "message": "Validation Failed",
            "errors": [{"resource": resource, "field": field, "code": code, "message": message}],
            "documentation_url": "https://docs.github.com/rest",
            "status": "422",
        }),
    )
}

fn github_error(status: StatusCode, message: &str) -> Response {
    json_response(
        status,
        &json!({
            "message": message,
            "documentation_url": "https://docs.github.com/rest",
            "status": status.as_u16().to_string(),
        }),
    )
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        body.to_string(),
    )
        .into_response()
}

/// `sha256=<hex>` of `body` under `secret`, as GitHub puts in `X-Hub-Signature-256`.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = match <Hmac<Sha256> as KeyInit>::new_from_slice(secret) {
        Ok(mac) => mac,
        // HMAC takes keys of any length; this arm cannot run.
        Err(_) => return String::new(),
    };
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let mut out = String::from("sha256=");
    for b in digest.iter() {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// Sends a webhook delivery as GitHub does: `POST` with `X-GitHub-Event`,
/// `X-GitHub-Delivery`, `X-Hub-Signature-256` (HMAC-SHA256 of `body` under `secret`),
/// `Content-Type: application/json` and a `GitHub-Hookshot` user agent. Returns the
/// status and the body of the answer; status 0 and the error text when the target
/// could not be reached.
pub async fn send_webhook(
    target_url: &str,
    event: &str,
    delivery_id: &str,
    secret: &[u8],
    body: &[u8],
) -> (u16, String) {
    let signature = sign(secret, body);
    send_raw_webhook(
        target_url,
        &[
            ("x-github-event", event),
            ("x-github-delivery", delivery_id),
            ("x-hub-signature-256", signature.as_str()),
            ("x-github-hook-id", "109948940"),
            ("x-github-hook-installation-target-type", "repository"),
        ],
        body,
    )
    .await
}

/// Sends a `POST` with exactly these extra headers (for tests of missing or wrong
/// signatures). `Content-Type: application/json` and the user agent are always set.
pub async fn send_raw_webhook(
    target_url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    send_raw("POST", target_url, headers, body).await
}

/// [`send_raw_webhook`] as a `PUT` (an API call with a JSON body).
pub async fn send_raw_put(
    target_url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    send_raw("PUT", target_url, headers, body).await
}

async fn send_raw(
    method: &str,
    target_url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    use http_body_util::{BodyExt, Full};
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;

    let client: Client<_, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut request = hyper::Request::builder()
        .method(method)
        .uri(target_url)
        .header("content-type", "application/json")
        .header("user-agent", "GitHub-Hookshot/044aadd");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = match request.body(Full::new(Bytes::copy_from_slice(body))) {
        Ok(r) => r,
        Err(e) => return (0, format!("cannot build the request: {e}")),
    };
    let response = match client.request(request).await {
        Ok(r) => r,
        Err(e) => return (0, format!("cannot reach {target_url}: {e}")),
    };
    let status = response.status().as_u16();
    match response.into_body().collect().await {
        Ok(collected) => (
            status,
            String::from_utf8_lossy(&collected.to_bytes()).into_owned(),
        ),
        Err(e) => (status, format!("cannot read the answer: {e}")),
    }
}

/// A `deployment` webhook body in GitHub's shape (`action`, `deployment` with its
/// `creator`, `workflow: null`, `workflow_run: null`, `repository` with `full_name`
/// and `clone_url`, `sender`), as GitHub sends when a deployment is created.
#[allow(clippy::too_many_arguments)]
pub fn deployment_event(
    repo: &str,
    clone_url: &str,
    deployment_id: i64,
    sha: &str,
    git_ref: &str,
    environment: &str,
    task: &str,
    payload: Value,
) -> Value {
    let api = "https://api.github.com";
    let owner = repo.split('/').next().unwrap_or_default();
    let name = repo.split('/').nth(1).unwrap_or_default();
    let url = format!("{api}/repos/{repo}/deployments/{deployment_id}");
    let now = now_rfc3339();
    json!({
        "action": "created",
        "deployment": {
            "url": url,
            "id": deployment_id,
            "node_id": format!("MDEwOkRlcGxveW1lbnQ{deployment_id}"),
            "sha": sha,
            "ref": git_ref,
            "task": task,
            "payload": payload,
            "original_environment": environment,
            "environment": environment,
            "description": format!("{TOKEN_LOGIN} deploying {git_ref} to {environment}"),
            "creator": user_json(TOKEN_LOGIN),
            "created_at": now,
            "updated_at": now,
            "statuses_url": format!("{url}/statuses"),
            "repository_url": format!("{api}/repos/{repo}"),
            "transient_environment": false,
            "production_environment": environment == "production",
            "performed_via_github_app": null,
        },
        "workflow": null,
        "workflow_run": null,
        "repository": {
            "id": 186853002,
            "node_id": "MDEwOlJlcG9zaXRvcnkxODY4NTMwMDI=",
            "name": name,
            "full_name": repo,
            "private": false,
            "owner": user_json(owner),
            "html_url": format!("https://github.com/{repo}"),
            "description": null,
            "fork": false,
            "url": format!("{api}/repos/{repo}"),
            "clone_url": clone_url,
            "git_url": format!("git://github.com/{repo}.git"),
            "ssh_url": format!("git@github.com:{repo}.git"),
            "default_branch": "main",
            "created_at": "2026-01-01T00:00:00Z",
            "updated_at": "2026-01-01T00:00:00Z",
            "pushed_at": "2026-01-01T00:00:00Z",
        },
        "sender": user_json(TOKEN_LOGIN),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_shas_are_stable_and_distinct() {
        let a = derived_sha("main");
        assert_eq!(a.len(), 40);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(a, derived_sha("main"));
        assert_ne!(a, derived_sha("topic"));
    }

    #[test]
    fn base64url_round_trip_of_known_values() {
        assert_eq!(
            base64url_decode("eyJhbGciOiJSUzI1NiJ9"),
            Some(br#"{"alg":"RS256"}"#.to_vec())
        );
        assert_eq!(base64url_decode("Zm9vYg"), Some(b"foob".to_vec()));
        assert_eq!(base64url_decode("Zm9vYg=="), Some(b"foob".to_vec()));
        assert_eq!(base64url_decode("Z"), None);
        assert_eq!(base64url_decode("Zm9v!"), None);
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("feature%2Fx"), "feature/x");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%C3%A9"), "é");
    }

    #[test]
    fn signatures_match_githubs_example() {
        assert_eq!(
            sign(b"It's a Secret to Everybody", b"Hello, World!"),
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
    }
}
