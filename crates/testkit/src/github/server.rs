//! From a request to its answer: the fake records the request, authenticates
//! it, applies any scripted reply or secondary rate limit, then routes it to its
//! endpoint.

use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use chrono::{SecondsFormat, Utc};
use serde_json::json;

use super::answers::{add_rate_limit_headers, github_error, json_response};
use super::auth::{access_token, authenticate, check_repo_access, installation_for_repo};
use super::commits::{check_runs, combined_status, tarball};
use super::deployments::{
    create_deployment, create_status, get_repo, list_deployments, list_statuses,
};
use super::state::{Shared, lock};
use super::{Endpoint, GHE_PREFIX, Recorded, Reply};

pub(super) fn percent_decode(s: &str) -> String {
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

pub(super) fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Who a request authenticates as.
pub(super) enum Caller {
    Token,
    App(u64),
    Installation(i64),
}

pub(super) async fn handle(
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
pub(super) struct Hold(Duration);

pub(super) fn route_request(
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
pub(super) fn dispatch(
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
pub(super) fn check_write_rate(
    state: &Shared,
    method: &Method,
    headers: &HeaderMap,
) -> Option<Response> {
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

pub(super) fn take_script(
    state: &Shared,
    endpoint: Endpoint,
    deployment: Option<i64>,
) -> Option<Reply> {
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

pub(super) fn scripted(reply: Reply) -> Response {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("feature%2Fx"), "feature/x");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%C3%A9"), "é");
    }
}
