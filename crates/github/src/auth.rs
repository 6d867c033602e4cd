//! Credentials: a token, or a GitHub App whose installation tokens are looked up per
//! repository and cached until shortly before they expire.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use chima_config::Secret;
use chrono::{DateTime, Utc};
use hyper::header::HeaderValue;
use octocrab::EncodingKey;
use octocrab::models::AppId;

use crate::client::{As, Needs};
use crate::error::GitHubError;

/// An installation token is replaced this long before GitHub says it expires, so that
/// a clone or a Heroku build started with it does not outlive it.
pub(crate) const TOKEN_REFRESH_MARGIN: Duration = Duration::from_secs(5 * 60);

/// A JWT is valid for 9 minutes (octocrab backdates `iat` a minute for clock drift);
/// one is reused for this long to avoid an RSA signature per request.
const JWT_REUSE: Duration = Duration::from_secs(5 * 60);

/// How calls authenticate.
pub(crate) enum Credentials {
    /// `Authorization: Bearer <GITHUB_TOKEN>`.
    Token {
        token: Secret,
        authorization: HeaderValue,
    },
    App(AppCredentials),
}

pub(crate) struct AppCredentials {
    pub app_id: u64,
    key: EncodingKey,
    jwt: Mutex<Option<(HeaderValue, Instant)>>,
    /// `owner/name` (lower case) -> installation id.
    installations: Mutex<HashMap<String, i64>>,
    /// One slot per installation, each behind its own async lock so that concurrent
    /// calls wait for one token exchange instead of each making their own, and so that
    /// a slow exchange for one installation does not hold up the others.
    tokens: Mutex<HashMap<i64, Arc<tokio::sync::Mutex<Option<InstallationToken>>>>>,
}

/// A cached installation token.
#[derive(Clone)]
pub(crate) struct InstallationToken {
    /// The installation it belongs to: writes are spaced per installation.
    pub installation: i64,
    pub token: Secret,
    pub authorization: HeaderValue,
    pub expires_at: DateTime<Utc>,
}

impl InstallationToken {
    pub fn new(
        installation: i64,
        token: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<Self, GitHubError> {
        Ok(InstallationToken {
            installation,
            token: Secret::new(token),
            authorization: bearer(token, "the installation token GitHub returned")?,
            expires_at,
        })
    }

    pub fn is_fresh(&self) -> bool {
        let margin = chrono::Duration::from_std(TOKEN_REFRESH_MARGIN).unwrap_or_default();
        self.expires_at - margin > Utc::now()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The maps hold plain data: a panic elsewhere cannot leave them half-written.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// `Bearer <token>` as a header value flagged sensitive (hyper then keeps it out of
/// debug output and HTTP/2 header compression).
pub(crate) fn bearer(token: &str, what: &str) -> Result<HeaderValue, GitHubError> {
    let mut value = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
        GitHubError::invalid(format!(
            "{what} holds characters that cannot be sent in an HTTP header"
        ))
    })?;
    value.set_sensitive(true);
    Ok(value)
}

impl Credentials {
    pub fn token(token: &Secret) -> Result<Credentials, GitHubError> {
        let trimmed = token.expose().trim();
        if trimmed.is_empty() {
            return Err(GitHubError::invalid("GITHUB_TOKEN is empty"));
        }
        Ok(Credentials::Token {
            token: Secret::new(trimmed),
            authorization: bearer(trimmed, "GITHUB_TOKEN")?,
        })
    }

    pub fn app(app_id: u64, private_key: &Secret) -> Result<Credentials, GitHubError> {
        if app_id == 0 {
            return Err(GitHubError::invalid(
                "GITHUB_APP_ID must be the App's numeric id (App settings, \"App ID\")",
            ));
        }
        let pem = private_key.expose().trim();
        // Keys passed through an environment variable often arrive with `\n` written
        // out; a PEM never contains a backslash, so undoing it is safe.
        let pem = if pem.contains("\\n") {
            pem.replace("\\n", "\n")
        } else {
            pem.to_string()
        };
        let key = EncodingKey::from_rsa_pem(pem.as_bytes()).map_err(|e| {
            GitHubError::invalid(format!(
                "GITHUB_APP_PRIVATE_KEY is not an RSA private key in PEM form \
                 (the .pem file GitHub generates, starting with -----BEGIN RSA PRIVATE KEY-----): {e}"
            ))
        })?;
        // Sign once now, so that a key that parses but cannot sign fails at start.
        octocrab::auth::create_jwt(AppId(app_id), &key).map_err(|e| {
            GitHubError::invalid(format!(
                "GITHUB_APP_PRIVATE_KEY cannot sign a GitHub App JWT: {e}"
            ))
        })?;
        Ok(Credentials::App(AppCredentials {
            app_id,
            key,
            jwt: Mutex::new(None),
            installations: Mutex::new(HashMap::new()),
            tokens: Mutex::new(HashMap::new()),
        }))
    }

    /// Whose credentials, for messages.
    pub fn who(&self, auth: &As) -> String {
        match (self, auth) {
            (Credentials::Token { .. }, _) => "the token in GITHUB_TOKEN".to_string(),
            (Credentials::App(app), As::App) => {
                format!("the GitHub App (GITHUB_APP_ID={})", app.app_id)
            }
            (Credentials::App(app), As::Repo(_)) => format!(
                "the GitHub App's installation token (GITHUB_APP_ID={})",
                app.app_id
            ),
        }
    }

    pub fn unauthorized_hint(&self, auth: &As) -> String {
        match (self, auth) {
            (Credentials::Token { .. }, _) => {
                "the token in GITHUB_TOKEN is wrong, expired or revoked".to_string()
            }
            (Credentials::App(app), As::App) => format!(
                "GitHub refused the App's JWT: check GITHUB_APP_ID ({}: is it this App's id?) \
                 and GITHUB_APP_PRIVATE_KEY (a current private key of that App); GitHub also \
                 refuses a JWT when this machine's clock is more than a minute off",
                app.app_id
            ),
            (Credentials::App(app), As::Repo(repo)) => format!(
                "a fresh installation token of the GitHub App (GITHUB_APP_ID={}) was refused \
                 for {repo}: is the installation suspended or removed? (GITHUB_APP_ID / \
                 GITHUB_APP_PRIVATE_KEY)",
                app.app_id
            ),
        }
    }

    pub fn forbidden_hint(&self, auth: &As, needs: Needs, repo: &str) -> String {
        match (self, auth) {
            (Credentials::Token { .. }, _) => format!(
                "the token in GITHUB_TOKEN needs the {} for {repo} (a fine-grained token: {})",
                needs.scope, needs.permission
            ),
            (Credentials::App(app), As::Repo(_)) => format!(
                "the GitHub App (GITHUB_APP_ID={}) needs the {} permission for {repo}: grant it \
                 in the App's settings, then accept the new permissions on the installation",
                app.app_id, needs.permission
            ),
            (Credentials::App(app), As::App) => format!(
                "the GitHub App (GITHUB_APP_ID={}) may not do this",
                app.app_id
            ),
        }
    }

    pub fn not_found_hint(&self, auth: &As) -> String {
        match (self, auth) {
            (Credentials::Token { .. }, _) => " (a private repository needs the `repo` scope; \
                 a fine-grained token must list the repository)"
                .to_string(),
            (Credentials::App(app), _) => format!(
                " (is the GitHub App (GITHUB_APP_ID={}) installed on the repository, with \
                 access to it?)",
                app.app_id
            ),
        }
    }

    /// A short name of the kind of credentials, for `Debug`.
    pub fn kind(&self) -> String {
        match self {
            Credentials::Token { .. } => "token".to_string(),
            Credentials::App(app) => format!("app {}", app.app_id),
        }
    }
}

impl AppCredentials {
    /// `Bearer <JWT>`, reused for a few minutes.
    pub fn jwt_authorization(&self) -> Result<HeaderValue, GitHubError> {
        let mut slot = lock(&self.jwt);
        if let Some((value, made)) = slot.as_ref()
            && made.elapsed() < JWT_REUSE
        {
            return Ok(value.clone());
        }
        let jwt = octocrab::auth::create_jwt(AppId(self.app_id), &self.key).map_err(|e| {
            GitHubError::invalid(format!(
                "GITHUB_APP_PRIVATE_KEY cannot sign a GitHub App JWT: {e}"
            ))
        })?;
        let value = bearer(&jwt, "the App's JWT")?;
        *slot = Some((value.clone(), Instant::now()));
        Ok(value)
    }

    pub fn cached_installation(&self, repo: &str) -> Option<i64> {
        lock(&self.installations)
            .get(&repo.to_ascii_lowercase())
            .copied()
    }

    pub fn remember_installation(&self, repo: &str, id: i64) {
        lock(&self.installations).insert(repo.to_ascii_lowercase(), id);
    }

    pub fn forget_installation(&self, repo: &str) {
        lock(&self.installations).remove(&repo.to_ascii_lowercase());
    }

    pub fn token_slot(
        &self,
        installation: i64,
    ) -> Arc<tokio::sync::Mutex<Option<InstallationToken>>> {
        lock(&self.tokens).entry(installation).or_default().clone()
    }
}
