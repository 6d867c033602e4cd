//! chima's client for faseng's JSON API (`FASENG_URL`, `FASENG_API_TOKEN`):
//! locks, cancel, rollback targets and history, where GitHub has none.

use std::time::Duration;

use anyhow::{Context, bail};
use chima_config::Secret;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

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

/// What faseng answered: status and JSON body.
pub struct Answer {
    pub status: u16,
    pub body: Value,
}

impl FasengApi {
    pub fn new(base: &str, token: Secret) -> anyhow::Result<FasengApi> {
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()
            .context("cannot load the system's root certificates")?
            .https_or_http()
            .enable_http1()
            .build();
        Ok(FasengApi {
            base: base.trim_end_matches('/').to_string(),
            token,
            client: Client::builder(TokioExecutor::new()).build(https),
        })
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Answer> {
        let url = format!("{}/api{path}", self.base);
        let bytes = body.map(|b| b.to_string()).unwrap_or_default();
        let req = Request::builder()
            .method(method)
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
            .context("cannot read faseng's answer")?
            .to_bytes();
        let body: Value = serde_json::from_slice(&raw).unwrap_or(Value::Null);
        if status == 401 {
            bail!("faseng refused FASENG_API_TOKEN (401)");
        }
        if status >= 500 {
            bail!(
                "faseng answered {status}: {}",
                body.get("error")
                    .and_then(Value::as_str)
                    .unwrap_or("no details")
            );
        }
        Ok(Answer { status, body })
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<Answer> {
        self.call(Method::GET, path, None).await
    }
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
