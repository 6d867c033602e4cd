//! chima's typed client for faseng's JSON API (`FASENG_URL`, `FASENG_API_TOKEN`):
//! locks, cancel, rollback targets, history and auto-deploy pauses, where GitHub
//! has none. The bodies are faseng's own types (`chima-api-types`). Any status
//! other than the ones a call expects is an error naming the URL and the status:
//! a wrong FASENG_URL answering 404 is never read as "no locks".

use std::time::Duration;

use anyhow::{Context, anyhow};
use chima_api_types::{
    AutoDeployState, By, CancelAnswer, ChatRouteAnswer, ChatRouteRequest, DecisionAnswer,
    DecisionRequest, DeploymentList, ErrorBody, FreezeRequest, Freezes, Frozen, LockAnswer,
    LockRequest, Locks, PauseRequest, Paused, Resumed, RollbackTarget, Unfrozen, UnlockAnswer,
};
use chima_config::Secret;
use chima_store::AutoDeployPause;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;
use serde::de::DeserializeOwned;

type Https = hyper_rustls::HttpsConnector<HttpConnector>;

#[derive(Clone)]
pub struct FasengApi {
    base: String,
    token: Secret,
    client: Client<Https, Full<Bytes>>,
}

impl std::fmt::Debug for FasengApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FasengApi({})", self.base)
    }
}

/// An HTTP(S) client with the system's root certificates.
pub fn https_client() -> anyhow::Result<Client<Https, Full<Bytes>>> {
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_native_roots()
        .context("cannot load the system's root certificates")?
        .https_or_http()
        .enable_http1()
        .build();
    Ok(Client::builder(TokioExecutor::new()).build(https))
}

/// A call without a body.
const NO_BODY: Option<&()> = None;

impl FasengApi {
    pub fn new(base: &str, token: Secret) -> anyhow::Result<FasengApi> {
        Ok(FasengApi {
            base: base.trim_end_matches('/').to_string(),
            token,
            client: https_client()?,
        })
    }

    /// One call: `expected` are the statuses whose body is a `T`; any other is an
    /// error that names the URL, the status and faseng's `error`, if it sent one.
    async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        expected: &[u16],
    ) -> anyhow::Result<(u16, T)> {
        let url = format!("{}/api{path}", self.base);
        let bytes = match body {
            Some(b) => serde_json::to_vec(b).context("cannot write the request to faseng")?,
            None => Vec::new(),
        };
        let req = Request::builder()
            .method(&method)
            .uri(&url)
            .header("authorization", format!("Bearer {}", self.token.expose()))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(bytes)))
            .context("cannot build the request to faseng")?;
        let resp = tokio::time::timeout(Duration::from_secs(15), self.client.request(req))
            .await
            .with_context(|| format!("faseng at {} did not answer in 15s", self.base))?
            .with_context(|| format!("cannot reach faseng at {} (FASENG_URL)", self.base))?;
        let status = resp.status().as_u16();
        let raw = resp
            .into_body()
            .collect()
            .await
            .with_context(|| format!("cannot read faseng's answer to {method} {url}"))?
            .to_bytes();
        if !expected.contains(&status) {
            let details = serde_json::from_slice::<ErrorBody>(&raw)
                .map(|e| e.error)
                .unwrap_or_else(|_| "no details".to_string());
            let hint = match status {
                401 => " (check FASENG_API_TOKEN)",
                404 => " (check FASENG_URL)",
                _ => "",
            };
            return Err(anyhow!(
                "faseng answered {status} to {method} {url}{hint}: {details}"
            ));
        }
        let answer = serde_json::from_slice(&raw).with_context(|| {
            format!("faseng answered {status} to {method} {url} with a body I cannot read")
        })?;
        Ok((status, answer))
    }

    /// Every lock.
    pub async fn locks(&self) -> anyhow::Result<Locks> {
        Ok(self.call(Method::GET, "/locks", NO_BODY, &[200]).await?.1)
    }

    /// Locks app+environment: `Locked`, or `Held` by someone else.
    pub async fn lock(
        &self,
        app: &str,
        env: &str,
        body: &LockRequest,
    ) -> anyhow::Result<LockAnswer> {
        let path = under("/locks", app, env);
        Ok(self
            .call(Method::PUT, &path, Some(body), &[201, 409])
            .await?
            .1)
    }

    /// Every freeze in force.
    pub async fn freezes(&self) -> anyhow::Result<Freezes> {
        Ok(self.call(Method::GET, "/freezes", NO_BODY, &[200]).await?.1)
    }

    /// Freezes app+environment (`*` for every app or environment).
    pub async fn freeze(
        &self,
        app: &str,
        env: &str,
        body: &FreezeRequest,
    ) -> anyhow::Result<Frozen> {
        let path = under("/freezes", app, env);
        Ok(self.call(Method::PUT, &path, Some(body), &[201]).await?.1)
    }

    /// Lifts the freeze of that scope, or the app's in every environment.
    pub async fn unfreeze(&self, app: &str, env: Option<&str>) -> anyhow::Result<Unfrozen> {
        let path = match env {
            Some(env) => under("/freezes", app, env),
            None => format!("/freezes/{}", enc(app)),
        };
        Ok(self.call(Method::DELETE, &path, NO_BODY, &[200]).await?.1)
    }

    pub async fn unlock(&self, app: &str, env: &str) -> anyhow::Result<UnlockAnswer> {
        let path = under("/locks", app, env);
        Ok(self.call(Method::DELETE, &path, NO_BODY, &[200]).await?.1)
    }

    /// Cancels what runs or waits in app+environment.
    pub async fn cancel(&self, app: &str, env: &str, by: &str) -> anyhow::Result<CancelAnswer> {
        let path = under("/environments", app, env) + "/cancel";
        let body = By { by: by.to_string() };
        Ok(self.call(Method::POST, &path, Some(&body), &[200]).await?.1)
    }

    /// Approves (`approve`) or rejects (`reject`) deployment `id` for the approver in
    /// `body`; faseng checks its own app.json. Refusals (403, 404, 409) are answers.
    pub async fn decide(
        &self,
        id: i64,
        verb: &str,
        body: &DecisionRequest,
    ) -> anyhow::Result<DecisionAnswer> {
        let path = format!("/deployments/{id}/{verb}");
        Ok(self
            .call(Method::POST, &path, Some(body), &[200, 403, 404, 409])
            .await?
            .1)
    }

    pub async fn rollback_target(&self, app: &str, env: &str) -> anyhow::Result<RollbackTarget> {
        let path = under("/environments", app, env) + "/rollback";
        Ok(self.call(Method::GET, &path, NO_BODY, &[200]).await?.1)
    }

    /// `deploys`: queued and running first, then the most recent.
    pub async fn history(
        &self,
        app: &str,
        env: Option<&str>,
        limit: i64,
    ) -> anyhow::Result<DeploymentList> {
        let mut path = format!("/deployments?view=history&limit={limit}&app={}", enc(app));
        if let Some(e) = env {
            path.push_str(&format!("&environment={}", enc(e)));
        }
        Ok(self.call(Method::GET, &path, NO_BODY, &[200]).await?.1)
    }

    /// Where the deployment with `source_key` posts its chat messages for a while.
    pub async fn set_chat_route(
        &self,
        source_key: &str,
        body: &ChatRouteRequest,
    ) -> anyhow::Result<ChatRouteAnswer> {
        let path = format!("/chat-routes/{}", enc(source_key));
        Ok(self.call(Method::PUT, &path, Some(body), &[200]).await?.1)
    }

    pub async fn autodeploy_state(&self, app: &str, env: &str) -> anyhow::Result<AutoDeployState> {
        let path = under("/autodeploy", app, env);
        Ok(self.call(Method::GET, &path, NO_BODY, &[200]).await?.1)
    }

    /// Pauses auto-deploy (`off`: the new pause) or resumes it (`None`: the pause lifted).
    pub async fn set_autodeploy(
        &self,
        app: &str,
        env: &str,
        off: Option<&PauseRequest>,
    ) -> anyhow::Result<Option<AutoDeployPause>> {
        let path = under("/autodeploy", app, env);
        Ok(match off {
            Some(body) => {
                let (_, paused): (_, Paused) =
                    self.call(Method::PUT, &path, Some(body), &[200]).await?;
                Some(paused.pause)
            }
            None => {
                let (_, resumed): (_, Resumed) =
                    self.call(Method::DELETE, &path, NO_BODY, &[200]).await?;
                resumed.resumed
            }
        })
    }
}

/// `{prefix}/{app}/{env}`, encoded.
fn under(prefix: &str, app: &str, env: &str) -> String {
    format!("{prefix}/{}/{}", enc(app), enc(env))
}

/// Percent-encodes a path segment or query value.
pub fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
