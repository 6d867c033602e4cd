//! The last step of GitHub's app-from-manifest flow
//! (<https://docs.github.com/en/apps/sharing-github-apps/registering-a-github-app-from-a-manifest>):
//! the temporary `code` GitHub redirects to is exchanged for the new App's id, private
//! key and webhook secret with `POST /app-manifests/{code}/conversions`
//! (<https://docs.github.com/en/rest/apps/apps#create-a-github-app-from-a-manifest>),
//! which takes no authentication.

use std::time::Duration;

use chima_config::Secret;
use http_body_util::{BodyExt, Full, Limited};
use hyper::StatusCode;
use hyper::body::Bytes;
use hyper::header;
use serde::Deserialize;

use crate::GitHubError;

/// The settings of an App GitHub just created from a manifest.
#[derive(Debug, Clone)]
pub struct ConvertedApp {
    /// The App's id (`GITHUB_APP_ID`).
    pub id: u64,
    /// The App's URL name (`https://github.com/apps/<slug>`), where it is installed.
    pub slug: String,
    /// The App's private key (PEM).
    pub pem: Secret,
    /// The secret GitHub signs the App's webhooks with (`GITHUB_WEBHOOK_SECRET`); empty
    /// when GitHub sent none.
    pub webhook_secret: Secret,
}

/// How long the exchange may take.
const TIMEOUT: Duration = Duration::from_secs(30);

/// Far more than an answer with one PEM key.
const MAX_ANSWER_BYTES: usize = 1024 * 1024;

/// Exchanges `code` at `api_url` (`GITHUB_API_URL`). A 404 (GitHub's answer for a code
/// that is unknown, already used or over an hour old) is [`GitHubError::NotFound`].
pub async fn convert_app_manifest(api_url: &str, code: &str) -> Result<ConvertedApp, GitHubError> {
    #[derive(Deserialize)]
    struct Answer {
        id: u64,
        #[serde(default)]
        slug: String,
        pem: String,
        webhook_secret: Option<String>,
    }
    let api_url = crate::normalise_api_url(api_url)?;
    let code = code.trim();
    if code.is_empty()
        || !code
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(GitHubError::invalid(
            "the manifest code is the `code` parameter of the URL GitHub redirected to \
             (letters and digits)",
        ));
    }
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_native_roots()
        .map_err(|e| {
            GitHubError::invalid(format!("cannot load the system's CA certificates: {e}"))
        })?
        .https_or_http()
        .enable_http1()
        .build();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build::<_, Full<Bytes>>(connector);
    let url = format!("{api_url}/app-manifests/{code}/conversions");
    let request = hyper::Request::post(&url)
        .header(header::ACCEPT, "application/vnd.github+json")
        .header(header::USER_AGENT, "faseng")
        .header("x-github-api-version", "2022-11-28")
        .body(Full::new(Bytes::new()))
        .map_err(|e| GitHubError::invalid(format!("POST {url}: {e}")))?;
    let exchange = async {
        let response = client.request(request).await.map_err(|e| {
            GitHubError::unavailable(format!("POST {url}: {}", crate::client::chain(&e)))
        })?;
        let status = response.status();
        let body = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
            .collect()
            .await
            .map_err(|e| GitHubError::unavailable(format!("reading GitHub's answer: {e}")))?
            .to_bytes();
        Ok::<_, GitHubError>((status, body))
    };
    let (status, body) = tokio::time::timeout(TIMEOUT, exchange)
        .await
        .map_err(|_| {
            GitHubError::unavailable(format!("no answer within {}s", TIMEOUT.as_secs()))
        })??;
    let message = || {
        serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("message")?.as_str().map(str::to_owned))
            .unwrap_or_else(|| String::from_utf8_lossy(&body).chars().take(200).collect())
    };
    match status {
        s if s.is_success() => {
            let answer: Answer = serde_json::from_slice(&body).map_err(|e| {
                GitHubError::unavailable(format!("GitHub's answer is not the App's settings: {e}"))
            })?;
            Ok(ConvertedApp {
                id: answer.id,
                slug: answer.slug,
                pem: Secret::new(answer.pem),
                webhook_secret: Secret::new(answer.webhook_secret.unwrap_or_default()),
            })
        }
        StatusCode::NOT_FOUND => Err(GitHubError::NotFound {
            what: "the manifest code (unknown, already used, or older than an hour: \
                   create the App from the manifest again for a new one)"
                .to_owned(),
        }),
        s if s.is_server_error() => Err(GitHubError::unavailable(format!(
            "GitHub answered {} ({})",
            s.as_u16(),
            message()
        ))),
        s => Err(GitHubError::Rejected {
            status: s.as_u16(),
            message: message(),
        }),
    }
}
