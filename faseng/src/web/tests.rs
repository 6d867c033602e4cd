//! The router, in-process (`oneshot`, no socket): each API error status, with the
//! JSON body every error has.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use chima_config::{Apps, Secret};
use chima_store::{Outcome, StoreError};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

use super::error::ApiError;
use super::{AppState, router};
use crate::links::LinkSigner;

const TOKEN: &str = "an-api-token-of-32-characters!!";

const APPS: &str = r#"{"app": {"provider": "shell", "repository": "example/app", "environments": ["production"]}}"#;

struct Rig {
    state: AppState,
    _dir: tempfile::TempDir,
}

async fn rig(api_token: Option<&str>) -> Rig {
    let dir = tempfile::tempdir().expect("temp folder");
    let url = format!("sqlite://{}", dir.path().join("store.db").display());
    let store = chima_store::open(&url).await.expect("store");
    let apps = Apps::parse(APPS, &dir.path().join("app.json")).expect("app.json");
    let state = AppState {
        store,
        apps: Some(Arc::new(apps)),
        links: LinkSigner::new(b"a-link-key-of-some-length"),
        public_url: "http://faseng.test".into(),
        webhook_secret: None,
        api_token: api_token.map(|t| Secret::new(t.to_string())),
        metrics_token: None,
        signing_key: None,
        metrics: Default::default(),
        autodeploy: None,
        engine_metrics: None,
        slack_api_url: "https://slack.com/api".into(),
        bounds: super::bounds::Bounds::new(8, 8),
    };
    Rig { state, _dir: dir }
}

/// Sends one request through the router; its status and JSON body.
async fn call(
    state: &AppState,
    method: &str,
    uri: &str,
    body: Option<&str>,
) -> (StatusCode, Value) {
    let mut req = Request::builder()
        .method(method)
        .uri(uri)
        .header("authorization", format!("Bearer {TOKEN}"));
    if body.is_some() {
        req = req.header("content-type", "application/json");
    }
    let req = req
        .body(body.map(|b| Body::from(b.to_string())).unwrap_or_default())
        .expect("request");
    let res = router(state.clone()).oneshot(req).await.expect("answer");
    let status = res.status();
    let bytes = res.into_body().collect().await.expect("body").to_bytes();
    let v = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| json!({"raw": String::from_utf8_lossy(&bytes)}));
    (status, v)
}

fn says(v: &Value, part: &str) -> bool {
    v["error"].as_str().is_some_and(|e| e.contains(part))
}

#[tokio::test]
async fn each_error_has_its_status_and_a_json_body() {
    let r = rig(Some(TOKEN)).await;
    let s = &r.state;

    // 401: no or wrong token.
    let req = Request::builder()
        .uri("/api/locks")
        .body(Body::empty())
        .expect("request");
    let res = router(s.clone()).oneshot(req).await.expect("answer");
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);

    // 404: no such deployment.
    let (st, v) = call(s, "GET", "/api/deployments/4242", None).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert!(says(&v, "4242"), "{v}");

    // 400: JSON that does not parse; a query that does not either.
    let (st, v) = call(s, "POST", "/api/deployments", Some("{not json")).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert!(v["error"].is_string());
    let (st, v) = call(s, "GET", "/api/deployments?state=sleeping", None).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");

    // 422: well-formed but refused (a field of the wrong type, an unknown app, a
    // hostile ref, a lock without holder).
    let (st, v) = call(s, "POST", "/api/deployments", Some(r#"{"app": 7}"#)).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    let create = |app: &str, git_ref: &str| {
        json!({"app": app, "environment": "production", "ref": git_ref, "requester": "alice", "key": format!("k-{app}-{git_ref}")}).to_string()
    };
    let (st, v) = call(s, "POST", "/api/deployments", Some(&create("nope", "main"))).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    let (st, v) = call(
        s,
        "POST",
        "/api/deployments",
        Some(&create("app", "--upload-pack=evil")),
    )
    .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(says(&v, "refused"), "{v}");
    let (st, v) = call(
        s,
        "PUT",
        "/api/locks/app/production",
        Some(r#"{"holder": ""}"#),
    )
    .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");

    // 409: cancelling a deployment that already ended; locking a held environment.
    let (st, v) = call(s, "POST", "/api/deployments", Some(&create("app", "main"))).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let id = v["deployment"]["id"].as_i64().expect("an id");
    let claimed = s
        .store
        .claim("w", std::time::Duration::from_secs(60))
        .await
        .expect("claim")
        .expect("claimable");
    assert_eq!(claimed.id, id);
    s.store
        .finish(id, "w", Outcome::succeeded(0))
        .await
        .expect("finish");
    let (st, v) = call(
        s,
        "POST",
        &format!("/api/deployments/{id}/cancel"),
        Some(r#"{"by": "bob"}"#),
    )
    .await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    let lock = r#"{"holder": "alice", "reason": "release"}"#;
    let (st, _) = call(s, "PUT", "/api/locks/app/production", Some(lock)).await;
    assert_eq!(st, StatusCode::CREATED);
    let (st, v) = call(
        s,
        "PUT",
        "/api/locks/app/production",
        Some(r#"{"holder": "bob"}"#),
    )
    .await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");

    // 503: the database does not answer (and the message does not say where it is).
    s.store.close().await;
    let (st, v) = call(s, "GET", "/api/locks", None).await;
    assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    assert!(says(&v, "does not answer"), "{v}");
    assert!(!v.to_string().contains("store.db"), "{v}");
}

#[tokio::test]
async fn the_api_is_off_without_a_token() {
    let r = rig(None).await;
    let (st, v) = call(&r.state, "GET", "/api/locks", None).await;
    assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE);
    assert!(says(&v, "FASENG_API_TOKEN"), "{v}");
}

#[test]
fn every_store_error_maps_to_one_status() {
    let op = || "do something".to_string();
    let cases = [
        (
            StoreError::NotFound {
                what: "deployment 1".into(),
            },
            StatusCode::NOT_FOUND,
        ),
        (
            StoreError::Conflict {
                op: op(),
                detail: "held by w2".into(),
            },
            StatusCode::CONFLICT,
        ),
        (
            StoreError::InvalidInput {
                op: op(),
                detail: "bad".into(),
            },
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            StoreError::Corrupt {
                op: op(),
                detail: "bad row".into(),
            },
            StatusCode::INTERNAL_SERVER_ERROR,
        ),
        (
            StoreError::Database {
                op: op(),
                source: sqlx::Error::PoolClosed,
            },
            StatusCode::SERVICE_UNAVAILABLE,
        ),
    ];
    for (e, want) in cases {
        assert_eq!(ApiError::from(e).status, want);
    }
}

/// `/api/freezes`: a freeze of faseng's own app.json scopes, refused for what it does
/// not know or cannot hold, lifted by scope; `POST /api/deployments` refuses a frozen
/// environment with 409 before creating anything, and passes it with `emergency`,
/// which lands in faseng's own notes.
#[tokio::test]
async fn freezes_through_the_api_and_the_deployments_they_stop() {
    let r = rig(Some(TOKEN)).await;
    let s = &r.state;
    let ends = (chrono::Utc::now() + chrono::Duration::hours(2)).to_rfc3339();
    let body = json!({"by": "alice", "by_id": "chat:U1", "reason": "release", "ends_at": ends})
        .to_string();
    let (code, v) = call(s, "PUT", "/api/freezes/app/production", Some(&body)).await;
    assert_eq!(code, StatusCode::CREATED, "{v}");
    assert_eq!(v["freeze"]["frozen_by"], "alice");
    assert_eq!(v["freeze"]["frozen_by_id"], "chat:U1");
    let (code, v) = call(s, "GET", "/api/freezes", None).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(v["freezes"].as_array().map(Vec::len), Some(1), "{v}");

    // Refusals: unknown scope, past or too far, empty or oversized fields, bad JSON.
    let far = (chrono::Utc::now() + chrono::Duration::days(91)).to_rfc3339();
    let past = (chrono::Utc::now() - chrono::Duration::minutes(1)).to_rfc3339();
    for (uri, body, part) in [
        (
            "/api/freezes/nope/production",
            json!({"by": "a", "ends_at": ends}),
            "I don't know an app called `nope`",
        ),
        (
            "/api/freezes/app/staging",
            json!({"by": "a", "ends_at": ends}),
            "has no environment `staging`",
        ),
        (
            "/api/freezes/*/nowhere",
            json!({"by": "a", "ends_at": ends}),
            "no app of faseng's app.json has an environment `nowhere`",
        ),
        (
            "/api/freezes/app/production",
            json!({"by": "a", "ends_at": far}),
            "at most 90 days",
        ),
        (
            "/api/freezes/app/production",
            json!({"by": "a", "ends_at": past}),
            "in the future",
        ),
        (
            "/api/freezes/app/production",
            json!({"by": "", "ends_at": ends}),
            "`by` is required",
        ),
        (
            "/api/freezes/app/production",
            json!({"by": "a".repeat(201), "ends_at": ends}),
            "`by` is required",
        ),
        (
            "/api/freezes/app/production",
            json!({"by": "a", "reason": "r".repeat(501), "ends_at": ends}),
            "longer than 500",
        ),
    ] {
        let (code, v) = call(s, "PUT", uri, Some(&body.to_string())).await;
        assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{uri} {v}");
        assert!(says(&v, part), "{uri}: {v}");
    }
    let (code, _) = call(s, "PUT", "/api/freezes/app/production", Some("{\"by\": 5}")).await;
    assert!(code.is_client_error(), "{code}");

    // A deployment there is refused with who, why and until when; nothing is stored.
    let create = json!({"app": "app", "environment": "production", "ref": "main", "requester": "bob", "key": "k1"});
    let (code, v) = call(s, "POST", "/api/deployments", Some(&create.to_string())).await;
    assert_eq!(code, StatusCode::CONFLICT, "{v}");
    assert!(says(&v, "production is frozen by alice until"), "{v}");
    assert!(says(&v, "release; nothing was created"), "{v}");
    let (_, v) = call(s, "GET", "/api/deployments", None).await;
    assert_eq!(v["deployments"].as_array().map(Vec::len), Some(0), "{v}");
    // Break-glass: created, its reason in faseng's notes.
    let mut glass = create.clone();
    glass["key"] = json!("k2");
    glass["emergency"] = json!("db down");
    let (code, v) = call(s, "POST", "/api/deployments", Some(&glass.to_string())).await;
    assert_eq!(code, StatusCode::CREATED, "{v}");
    assert_eq!(
        v["deployment"]["payload"]["_faseng"]["emergency"],
        "db down"
    );
    glass["key"] = json!("k3");
    glass["emergency"] = json!("  ");
    let (code, v) = call(s, "POST", "/api/deployments", Some(&glass.to_string())).await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    // A sender's own `_faseng.emergency` in the payload counts for nothing.
    let mut forged = create.clone();
    forged["key"] = json!("k4");
    forged["payload"] =
        json!({"_faseng": {"identity": {"source": "trusted"}, "emergency": "forged"}});
    let (code, v) = call(s, "POST", "/api/deployments", Some(&forged.to_string())).await;
    assert_eq!(code, StatusCode::CONFLICT, "{v}");

    // Lifted by scope.
    let (code, v) = call(s, "DELETE", "/api/freezes/app/production", None).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(v["lifted"].as_array().map(Vec::len), Some(1), "{v}");
    let (code, v) = call(s, "DELETE", "/api/freezes/app", None).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(v["lifted"], json!([]));
    let (code, _) = call(s, "POST", "/api/deployments", Some(&create.to_string())).await;
    assert_eq!(code, StatusCode::CREATED);
}
