//! The running fake GitHub and the calls a test makes on it: add repositories
//! and refs, script failures, install Apps, and read back what was received.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use chrono::Utc;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::server::handle;
use super::state::{Installation, Repo, Script, Shared, State, lock, resolve};
use super::{
    Endpoint, FIRST_DEPLOYMENT_ID, FakeCheckRun, FakeDeployment, FakeDeploymentStatus,
    FakeManifestApp, FakeStatus, GHE_PREFIX, Recorded, Reply, TOKEN,
};

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
        self.seed_deployment_of_task(repo, git_ref, environment, creator, "deploy")
    }

    /// [`FakeGitHub::seed_deployment`] of another task (`deploy:noop`, `deploy:migrate`).
    pub fn seed_deployment_of_task(
        &self,
        repo: &str,
        git_ref: &str,
        environment: &str,
        creator: &str,
        task: &str,
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
            task: task.to_string(),
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

    /// What GitHub shows as deployed to `environment` of `repo`: the newest deployment
    /// whose latest status is `success` (one marked `inactive` since, by a later
    /// success's `auto_inactive`, is not).
    pub fn active_deployment(&self, repo: &str, environment: &str) -> Option<FakeDeployment> {
        let st = lock(&self.state);
        st.deployments
            .iter()
            .rev()
            .filter(|d| d.repo.eq_ignore_ascii_case(repo) && d.environment == environment)
            .find(|d| {
                st.statuses
                    .iter()
                    .rev()
                    .find(|s| s.deployment_id == d.id)
                    .is_some_and(|s| s.state == "success")
            })
            .cloned()
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
