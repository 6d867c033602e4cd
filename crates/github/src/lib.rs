//! Typed GitHub calls for chima and faseng: deployments, deployment statuses, CI state,
//! source tarballs, clone credentials; webhook verification and parsing; and the
//! deliverer that turns the outbox's `github` events into deployment statuses.
//!
//! The HTTP client is octocrab's, pointed at `api_url` (`GITHUB_API_URL`), so tests
//! drive the real client against `chima_testkit::github::FakeGitHub` and GitHub
//! Enterprise works with its `/api/v3` prefix. Credentials are a token
//! (`GITHUB_TOKEN`) or a GitHub App (`GITHUB_APP_ID` + `GITHUB_APP_PRIVATE_KEY`) whose
//! installation is looked up per repository. This crate sets the `Authorization`
//! header itself and runs its own retries (octocrab's App mode serves one
//! installation per client, and its retry layer cannot tell a two-second rate limit
//! from a forty-minute one).
//!
//! Errors ([`GitHubError`]) are sorted by what the operator must do and say which
//! setting, scope or permission is involved; none ever contains a token.
//!
//! Following GitHub's best practices
//! (<https://docs.github.com/en/rest/using-the-rest-api/best-practices-for-using-the-rest-api>):
//! writes (POST, PATCH, PUT, DELETE) go one at a time per token or App installation,
//! [`DEFAULT_WRITE_SPACING`] apart; reads that one caller needs are made one after the
//! other rather than at once; `Retry-After` and `x-ratelimit-reset` are waited out;
//! lists are read page by page through the `Link` header; and a deployment create,
//! which is not idempotent, is never sent twice blindly (see
//! [`GitHub::create_deployment`]).

#![warn(missing_docs)]

use std::fmt;
use std::sync::Arc;

use chima_config::Secret;
use hyper::StatusCode;
use hyper::header::HeaderValue;

mod api;
mod app_manifest;
mod auth;
mod base64;
mod client;
mod deliver;
mod error;
mod types;
pub mod webhook;

pub use api::MAX_PAGES;
pub use app_manifest::{ConvertedApp, convert_app_manifest};
pub use client::{DEFAULT_WRITE_SPACING, RetryPolicy};
pub use deliver::{StatusDeliverer, TARGET as STATUS_TARGET};
pub use error::GitHubError;
pub use types::{
    CheckRun, CiState, CommitStatus, ContextState, CreateOutcome, DeploymentBody,
    DeploymentSummary, MAX_DESCRIPTION_CHARS, RequestId, StatusBody, StatusState,
    truncate_description,
};

use auth::{AppCredentials, Credentials, InstallationToken};
use client::{As, Call, Gate, Needs, Reply, Transport, WriteGates};
use error::CallError;

/// Where GitHub is and who we are there.
#[derive(Debug, Clone)]
pub struct GitHubConfig {
    /// `GITHUB_API_URL`: [`DEFAULT_API_URL`], or `https://HOST/api/v3` for GitHub
    /// Enterprise Server.
    pub api_url: String,
    /// Who we are: a token or a GitHub App.
    pub auth: Auth,
}

/// The public API, used when `GITHUB_API_URL` is not set.
pub const DEFAULT_API_URL: &str = "https://api.github.com";

/// Credentials.
#[derive(Debug, Clone)]
pub enum Auth {
    /// `GITHUB_TOKEN`: a personal access token (classic scopes `repo` or
    /// `repo_deployment`, or fine-grained Deployments: write...), sent as
    /// `Authorization: Bearer`.
    Token(Secret),
    /// `GITHUB_APP_ID` + `GITHUB_APP_PRIVATE_KEY` (the PEM GitHub generates).
    App {
        /// `GITHUB_APP_ID`: the App's numeric id.
        app_id: u64,
        /// `GITHUB_APP_PRIVATE_KEY`: the App's private key, PEM.
        private_key: Secret,
    },
}

impl Auth {
    /// The credentials the settings name (`GITHUB_TOKEN`, or `GITHUB_APP_ID` +
    /// `GITHUB_APP_PRIVATE_KEY`), `None` when none are set. A token wins over
    /// an App; an App id without its key is an error, not a silent fallback.
    pub fn from_settings(
        token: Option<&str>,
        app_id: Option<u64>,
        private_key: Option<&str>,
    ) -> Result<Option<Auth>, GitHubError> {
        match (
            token.filter(|t| !t.is_empty()),
            app_id,
            private_key.filter(|k| !k.is_empty()),
        ) {
            (Some(t), _, _) => Ok(Some(Auth::Token(Secret::new(t)))),
            (None, Some(app_id), Some(key)) => Ok(Some(Auth::App {
                app_id,
                private_key: Secret::new(key),
            })),
            (None, Some(_), None) => Err(GitHubError::invalid(
                "GITHUB_APP_ID is set but GITHUB_APP_PRIVATE_KEY is not",
            )),
            (None, None, _) => Ok(None),
        }
    }
}

/// A GitHub client. Cheap to clone (one `Arc`); clones share connections and the
/// installation token cache.
#[derive(Clone)]
pub struct GitHub {
    inner: Arc<Inner>,
}

struct Inner {
    api_url: String,
    transport: Transport,
    creds: Arc<Credentials>,
}

impl fmt::Debug for GitHub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GitHub")
            .field("api_url", &self.inner.api_url)
            .field("auth", &self.inner.creds.kind())
            .finish_non_exhaustive()
    }
}

impl GitHub {
    /// Builds the client. Fails on an `api_url` that is not an http(s) URL, an empty
    /// token, or a private key that cannot sign (so that bad settings fail at start,
    /// not at the first deploy). Makes no request.
    ///
    /// Call it inside a Tokio runtime: octocrab starts its connection buffer task
    /// there (outside one this returns [`GitHubError::Invalid`] instead of panicking).
    pub fn new(cfg: GitHubConfig) -> Result<GitHub, GitHubError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(GitHubError::invalid(
                "GitHub::new needs a Tokio runtime (octocrab spawns a task)",
            ));
        }
        let api_url = normalise_api_url(&cfg.api_url)?;
        let creds = match &cfg.auth {
            Auth::Token(token) => Credentials::token(token)?,
            Auth::App {
                app_id,
                private_key,
            } => Credentials::app(*app_id, private_key)?,
        };
        let policy = RetryPolicy::default();
        let writes = Arc::new(WriteGates::new(DEFAULT_WRITE_SPACING));
        let transport = build_transport(&api_url, policy, writes)?;
        Ok(GitHub {
            inner: Arc::new(Inner {
                api_url,
                transport,
                creds: Arc::new(creds),
            }),
        })
    }

    /// The same client with other retry settings (tests use short delays).
    pub fn with_retry_policy(self, policy: RetryPolicy) -> GitHub {
        GitHub {
            inner: Arc::new(Inner {
                api_url: self.inner.api_url.clone(),
                transport: Transport {
                    api: self.inner.transport.api.clone(),
                    raw: self.inner.transport.raw.clone(),
                    policy,
                    writes: self.inner.transport.writes.clone(),
                },
                creds: self.inner.creds.clone(),
            }),
        }
    }

    /// The same client with another pause between two writes on one credential
    /// ([`DEFAULT_WRITE_SPACING`], GitHub's advice, unless told otherwise; tests use
    /// a few milliseconds). The returned client has lanes of its own.
    pub fn with_write_spacing(self, spacing: std::time::Duration) -> GitHub {
        GitHub {
            inner: Arc::new(Inner {
                api_url: self.inner.api_url.clone(),
                transport: Transport {
                    api: self.inner.transport.api.clone(),
                    raw: self.inner.transport.raw.clone(),
                    policy: self.inner.transport.policy.clone(),
                    writes: Arc::new(WriteGates::new(spacing)),
                },
                creds: self.inner.creds.clone(),
            }),
        }
    }

    /// The retry settings in use.
    pub(crate) fn policy(&self) -> &RetryPolicy {
        &self.inner.transport.policy
    }

    /// The API base URL in use, without a trailing `/`.
    pub fn api_url(&self) -> &str {
        &self.inner.api_url
    }

    /// Sends a call with the right credentials. With an App, a 401 on an installation
    /// token (revoked, or the App reinstalled) drops the cached token and installation
    /// and tries once more with fresh ones.
    pub(crate) async fn send(&self, call: &Call) -> Result<Reply, CallError> {
        let creds = &*self.inner.creds;
        let transport = &self.inner.transport;
        match (creds, &call.auth) {
            (Credentials::Token { authorization, .. }, _) => {
                transport
                    .request(creds, call, authorization, Gate::Token)
                    .await
            }
            (Credentials::App(app), As::App) => {
                let jwt = app.jwt_authorization()?;
                transport.request(creds, call, &jwt, Gate::App).await
            }
            (Credentials::App(app), As::Repo(repo)) => {
                let token = self.installation_token(app, repo, false).await?;
                let gate = Gate::Installation(token.installation);
                let reply = transport
                    .request(creds, call, &token.authorization, gate)
                    .await?;
                if reply.status != StatusCode::UNAUTHORIZED {
                    return Ok(reply);
                }
                tracing::info!(%repo, "installation token refused: fetching a new one");
                app.forget_installation(repo);
                let token = self.installation_token(app, repo, true).await?;
                let gate = Gate::Installation(token.installation);
                transport
                    .request(creds, call, &token.authorization, gate)
                    .await
            }
        }
    }

    /// Sends and accepts only 2xx: anything else becomes the error that says what to fix.
    pub(crate) async fn send_ok(&self, call: &Call) -> Result<Reply, CallError> {
        let reply = self.send(call).await?;
        if reply.status.is_success() {
            Ok(reply)
        } else {
            Err(client::refusal(&self.inner.creds, call, &reply))
        }
    }

    /// Sends a call with the App's JWT and accepts only 2xx. (Separate from
    /// [`GitHub::send`], which calls into the token exchange that uses this.)
    async fn send_as_app(&self, call: &Call) -> Result<Reply, CallError> {
        let creds = &*self.inner.creds;
        let Credentials::App(app) = creds else {
            return Err(GitHubError::invalid("App calls need GitHub App credentials").into());
        };
        let jwt = app.jwt_authorization()?;
        let reply = self
            .inner
            .transport
            .request(creds, call, &jwt, Gate::App)
            .await?;
        if reply.status.is_success() {
            Ok(reply)
        } else {
            Err(client::refusal(creds, call, &reply))
        }
    }

    /// The installation token for `repo`: cached, or exchanged for the App's JWT.
    async fn installation_token(
        &self,
        app: &AppCredentials,
        repo: &str,
        force: bool,
    ) -> Result<InstallationToken, CallError> {
        let installation = match app.cached_installation(repo) {
            Some(id) => id,
            None => {
                let id = self.lookup_installation(repo).await?;
                app.remember_installation(repo, id);
                id
            }
        };
        let slot = app.token_slot(installation);
        let mut cached = slot.lock().await;
        if !force && let Some(token) = cached.as_ref().filter(|t| t.is_fresh()) {
            return Ok(token.clone());
        }
        let token = self.exchange_token(installation).await?;
        *cached = Some(token.clone());
        Ok(token)
    }

    /// Whether these credentials see `repo`, for `doctor`: a line to print, or what
    /// failed and why (the caller adds what to do, which depends on its needs).
    pub async fn describe_access(&self, repo: &str) -> Result<String, (String, String)> {
        if let Err(e) = self.default_branch(repo).await {
            return Err((
                format!("GitHub repository {repo}"),
                format!("the credentials cannot see it: {e}"),
            ));
        }
        match self.installation_for(repo).await {
            Ok(Some(id)) => Ok(format!("GitHub sees {repo} (App installation {id})")),
            Ok(None) => Ok(format!("GitHub sees {repo}")),
            Err(e) => Err((format!("GitHub App installation on {repo}"), e.to_string())),
        }
    }

    /// As a GitHub App: the id of the installation that covers `repo` (remembered, else
    /// `GET /repos/{owner}/{repo}/installation`); `None` with a token.
    pub async fn installation_for(&self, repo: &str) -> Result<Option<i64>, GitHubError> {
        let Credentials::App(app) = &*self.inner.creds else {
            return Ok(None);
        };
        if let Some(id) = app.cached_installation(repo) {
            return Ok(Some(id));
        }
        let id = self.lookup_installation(repo).await?;
        app.remember_installation(repo, id);
        Ok(Some(id))
    }

    /// `GET /repos/{owner}/{repo}/installation`, as the App.
    async fn lookup_installation(&self, repo: &str) -> Result<i64, CallError> {
        #[derive(serde::Deserialize)]
        struct Installation {
            id: i64,
        }
        let call = Call::get(
            format!("/repos/{repo}/installation"),
            As::App,
            format!("a GitHub App installation on {repo}"),
            Needs::METADATA_READ,
        );
        let reply = self.send_as_app(&call).await?;
        Ok(reply.json::<Installation>(&call)?.id)
    }

    /// `POST /app/installations/{id}/access_tokens`, as the App.
    async fn exchange_token(&self, installation: i64) -> Result<InstallationToken, CallError> {
        #[derive(serde::Deserialize)]
        struct AccessToken {
            token: String,
            expires_at: Option<chrono::DateTime<chrono::Utc>>,
        }
        let call = Call::post(
            format!("/app/installations/{installation}/access_tokens"),
            serde_json::json!({}),
            As::App,
            format!("GitHub App installation {installation}"),
            Needs::METADATA_READ,
        );
        let reply = self.send_as_app(&call).await?;
        let token = reply.json::<AccessToken>(&call)?;
        tracing::debug!(installation, expires_at = ?token.expires_at, "new installation token");
        // GitHub's tokens last an hour; an answer without a date is treated as such.
        let expires_at = token
            .expires_at
            .unwrap_or_else(|| chrono::Utc::now() + chrono::Duration::hours(1));
        Ok(InstallationToken::new(
            installation,
            &token.token,
            expires_at,
        )?)
    }

    /// The bare token for `repo` (for `git` and such), never logged.
    pub(crate) async fn token_for(&self, repo: &str) -> Result<Secret, CallError> {
        match &*self.inner.creds {
            Credentials::Token { token, .. } => Ok(token.clone()),
            Credentials::App(app) => Ok(self.installation_token(app, repo, false).await?.token),
        }
    }
}

/// The GitHub App permissions the calls of this crate need, as a manifest's
/// `default_permissions` (`("deployments", "write")`, ...), sorted by name: the
/// strongest access any call needs to each.
pub fn app_permissions() -> Vec<(&'static str, &'static str)> {
    let mut out: std::collections::BTreeMap<&'static str, &'static str> = Default::default();
    for need in Needs::ALL {
        let (key, access) = need.app_permission;
        let held = out.entry(key).or_insert(access);
        if access == "write" {
            *held = access;
        }
    }
    out.into_iter().collect()
}

/// Trims the trailing `/` and checks that the URL can carry requests.
fn normalise_api_url(url: &str) -> Result<String, GitHubError> {
    let trimmed = url.trim().trim_end_matches('/');
    let bad = || {
        GitHubError::invalid(format!(
            "GITHUB_API_URL `{trimmed}` is not an http(s) URL such as {DEFAULT_API_URL} \
             or https://github.example.com/api/v3"
        ))
    };
    let uri: hyper::Uri = trimmed.parse().map_err(|_| bad())?;
    match uri.scheme_str() {
        Some("http") | Some("https") => {}
        _ => return Err(bad()),
    }
    if uri.authority().is_none() || uri.query().is_some() {
        return Err(bad());
    }
    Ok(trimmed.to_string())
}

/// The two octocrab clients: both unauthenticated (the header is ours), retries off
/// (ours: octocrab's `retry` feature is compiled in, so `RetryConfig::None` is what
/// keeps it from resending a create blindly), one following redirects and one not.
fn build_transport(
    api_url: &str,
    policy: RetryPolicy,
    writes: Arc<WriteGates>,
) -> Result<Transport, GitHubError> {
    use octocrab::service::middleware::base_uri::BaseUriLayer;
    use octocrab::service::middleware::extra_headers::ExtraHeadersLayer;
    use octocrab::service::middleware::retry::RetryConfig;

    let uri: hyper::Uri = api_url
        .parse()
        .map_err(|_| GitHubError::invalid(format!("GITHUB_API_URL `{api_url}` is not a URL")))?;
    let api = octocrab::Octocrab::builder()
        .base_uri(uri.clone())
        .map_err(|e| GitHubError::invalid(format!("GITHUB_API_URL: {}", client::chain(&e))))?
        .add_retry_config(RetryConfig::None)
        .set_connect_timeout(Some(std::time::Duration::from_secs(10)))
        .set_read_timeout(Some(policy.request_timeout))
        .build()
        .map_err(|e| {
            GitHubError::invalid(format!(
                "cannot set up the HTTPS client (system CA certificates?): {}",
                client::chain(&e)
            ))
        })?;

    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_native_roots()
        .map_err(|e| {
            GitHubError::invalid(format!(
                "cannot load the system's CA certificates for GitHub: {e}"
            ))
        })?
        .https_or_http()
        .enable_http1()
        .build();
    let hyper_client =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build(connector);
    let Ok(raw) = octocrab::OctocrabBuilder::new_empty()
        .with_service(hyper_client)
        .with_layer(&BaseUriLayer::new(uri))
        .with_layer(&ExtraHeadersLayer::new(Arc::new(vec![(
            hyper::header::USER_AGENT,
            HeaderValue::from_static("chima-github"),
        )])))
        .with_auth(octocrab::AuthState::None)
        .build();
    Ok(Transport {
        api,
        raw,
        policy,
        writes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `Needs::X` the crate's code uses is in `Needs::ALL` and every one of
    /// `Needs::ALL` is used: the App manifest asks for what the calls need, no more.
    #[test]
    fn app_permissions_are_those_the_calls_need() {
        let all = [
            "DEPLOYMENTS_WRITE",
            "DEPLOYMENTS_READ",
            "METADATA_READ",
            "STATUSES_READ",
            "CHECKS_READ",
            "CONTENTS_READ",
        ];
        assert_eq!(all.len(), Needs::ALL.len());
        let mut used = std::collections::BTreeSet::new();
        // Every source file, in `src` and its module folders (`api/`, `client/`).
        let mut files = Vec::new();
        let mut dirs = vec![std::path::PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/src"
        ))];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    files.push(path);
                }
            }
        }
        assert!(files.len() > 10, "{files:?}");
        for path in files {
            let text = std::fs::read_to_string(path).unwrap();
            let mut code = text.split("#[cfg(test)]").next().unwrap_or("").to_string();
            // Not the list itself: only the calls' own needs.
            if let Some(start) = code.find("pub const ALL: &[Needs] = &[") {
                let end = start + code[start..].find("];").unwrap();
                code.replace_range(start..end, "");
            }
            for (i, _) in code.match_indices("Needs::") {
                let name: String = code[i + 7..]
                    .chars()
                    .take_while(|c| c.is_ascii_uppercase() || *c == '_')
                    .collect();
                if !name.is_empty() && name != "ALL" {
                    used.insert(name);
                }
            }
        }
        let used: Vec<String> = used.into_iter().collect();
        let mut expected: Vec<String> = all.iter().map(|s| s.to_string()).collect();
        expected.sort();
        assert_eq!(used, expected);
        assert_eq!(
            app_permissions(),
            [
                ("checks", "read"),
                ("contents", "read"),
                ("deployments", "write"),
                ("metadata", "read"),
                ("statuses", "read"),
            ]
        );
    }

    #[test]
    fn outside_a_runtime_new_fails_instead_of_panicking() {
        let made = GitHub::new(GitHubConfig {
            api_url: DEFAULT_API_URL.to_string(),
            auth: Auth::Token(Secret::new("t")),
        });
        assert!(matches!(made, Err(GitHubError::Invalid { .. })));
    }

    #[test]
    fn api_urls_are_checked_and_trimmed() {
        assert_eq!(
            normalise_api_url("https://api.github.com/").ok().as_deref(),
            Some("https://api.github.com")
        );
        assert_eq!(
            normalise_api_url(" https://ghe.example.com/api/v3 ")
                .ok()
                .as_deref(),
            Some("https://ghe.example.com/api/v3")
        );
        for bad in ["api.github.com", "ftp://x", "", "https://x/?a=b", "/api/v3"] {
            assert!(
                matches!(normalise_api_url(bad), Err(GitHubError::Invalid { .. })),
                "{bad}"
            );
        }
    }
}
