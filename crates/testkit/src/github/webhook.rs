//! What the fake sends rather than answers: signed webhook deliveries, as
//! GitHub's hookshot sends them, and the `deployment` event body.

use axum::body::Bytes;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use super::TOKEN_LOGIN;
use super::answers::user_json;
use super::state::now_rfc3339;

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

pub(super) async fn send_raw(
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
    fn signatures_match_githubs_example() {
        assert_eq!(
            sign(b"It's a Secret to Everybody", b"Hello, World!"),
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
    }
}
