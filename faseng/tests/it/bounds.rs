//! Live log streams and page loads are bounded (FASENG_MAX_STREAMS,
//! FASENG_MAX_PAGE_LOADS): beyond the bound the answer is 503 with `Retry-After`,
//! while `/healthz` and webhooks still answer; a freed place is taken again.

use std::time::Duration;

use chima_store::{NewDeployment, NewLogLine, Stream};
use chima_testkit::github::send_webhook;
use http_body_util::{BodyExt, Empty};
use hyper::body::{Bytes, Incoming};
use serde_json::json;
use sqlx::Connection;

use crate::harness::{Faseng, SECRET, get};
use crate::pages::links::LinkSigner;

const APPS: &str = r#"{
  "web": {"provider": "shell", "repository": "acme/web", "environments": ["production"]}
}"#;

const TOKEN: &str = "api-token-for-bounds-tests";

/// The signer of a faseng without FASENG_API_TOKEN (the key is the webhook secret).
fn signer() -> LinkSigner {
    LinkSigner::new(SECRET.as_bytes())
}

/// The signer of a faseng with FASENG_API_TOKEN [`TOKEN`] (the key is the token).
fn token_signer() -> LinkSigner {
    LinkSigner::new(TOKEN.as_bytes())
}

/// A deployment nothing will run (faseng is web-only): its stream stays open.
async fn queued(f: &Faseng, n: u32) -> i64 {
    f.store
        .create_deployment(NewDeployment {
            source_key: format!("bounds-{n}"),
            requester: "alice".to_string(),
            app: "web".to_string(),
            environment: "production".to_string(),
            repository: "acme/web".to_string(),
            git_ref: "main".to_string(),
            sha: Some("4f1c0ffee0ddba11c0de5eed0123456789abcdef".to_string()),
            task: "deploy".to_string(),
            hosts: None,
            provider: "shell".to_string(),
            payload: json!({}),
            github_deployment_id: None,
            notify: vec![],
            timeout_secs: None,
        })
        .await
        .unwrap()
        .deployment
        .id
}

/// A GET whose body is left unread: status, headers, and the open body.
async fn open(url: &str, headers: &[(&str, &str)]) -> (u16, hyper::HeaderMap, Incoming) {
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut req = hyper::Request::get(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = tokio::time::timeout(
        Duration::from_secs(20),
        client.request(req.body(Empty::new()).unwrap()),
    )
    .await
    .unwrap_or_else(|_| panic!("no answer from {url} within 20s"))
    .unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, headers, resp.into_body())
}

async fn text_of(body: Incoming) -> String {
    let bytes = tokio::time::timeout(Duration::from_secs(20), body.collect())
        .await
        .expect("the body within 20s")
        .unwrap()
        .to_bytes();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Asserts a refusal: 503, `Retry-After`, and the text saying what is bounded.
async fn assert_refused(what: &str, answer: (u16, hyper::HeaderMap, Incoming), text: &str) {
    let (status, headers, body) = answer;
    let body = text_of(body).await;
    assert_eq!(status, 503, "{what}: {body}");
    let retry: u64 = headers
        .get("retry-after")
        .unwrap_or_else(|| panic!("{what}: no Retry-After"))
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{what}: Retry-After {retry}");
    assert_eq!(body, text, "{what}");
}

/// `/healthz` and a webhook answer, whatever the bounds.
async fn others_still_answer(f: &Faseng, delivery: &str) {
    assert_eq!(
        get(&format!("{}/healthz", f.url)).await,
        (200, "ok\n".into())
    );
    let (status, text) = send_webhook(
        &format!("{}/webhooks/github", f.url),
        "ping",
        delivery,
        SECRET.as_bytes(),
        br#"{"zen": "Keep it logically awesome.", "hook_id": 1}"#,
    )
    .await;
    assert_eq!(status, 200, "{text}");
}

#[tokio::test]
async fn live_streams_beyond_the_bound_get_503_until_one_closes() {
    let f = Faseng::start_with(
        APPS,
        None,
        &[("FASENG_WORKERS", "0"), ("FASENG_MAX_STREAMS", "2")],
    )
    .await;
    let id = queued(&f, 1).await;
    let events = format!(
        "{}/deployments/{id}/events?sig={}",
        f.url,
        signer().sign(id)
    );
    let sse = [("accept", "text/event-stream")];

    let (s1, _, first) = open(&events, &sse).await;
    let (s2, _, second) = open(&events, &sse).await;
    assert_eq!((s1, s2), (200, 200));

    assert_refused(
        "a third stream",
        open(&events, &sse).await,
        "too many open log streams (2); try again shortly\n",
    )
    .await;
    // A stream of another deployment counts too.
    let other = queued(&f, 2).await;
    assert_refused(
        "a stream of another deployment",
        open(
            &format!(
                "{}/deployments/{other}/events?sig={}",
                f.url,
                signer().sign(other)
            ),
            &sse,
        )
        .await,
        "too many open log streams (2); try again shortly\n",
    )
    .await;
    // Streams do not take page loads, nor the health check or webhooks.
    let (status, page) = get(&signer().url(&f.url, id)).await;
    assert_eq!(status, 200, "{page}");
    others_still_answer(&f, "bounds-streams").await;

    // One browser goes away: its place is freed (once faseng's next write to it fails:
    // a log line, or the keep-alive) and taken by the next one.
    drop(first);
    f.store
        .append_logs(
            id,
            &[NewLogLine {
                stream: Stream::Stdout,
                line: "hello".into(),
                at: chrono::Utc::now(),
            }],
        )
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let third = loop {
        let (status, _, body) = open(&events, &sse).await;
        if status == 200 {
            break body;
        }
        assert_eq!(status, 503);
        assert!(
            tokio::time::Instant::now() < deadline,
            "a closed stream's place was never freed:\n{}",
            f.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // And the bound holds again.
    assert_refused(
        "a stream beyond the bound again",
        open(&events, &sse).await,
        "too many open log streams (2); try again shortly\n",
    )
    .await;
    drop((second, third));
}

#[tokio::test]
async fn page_loads_beyond_the_bound_get_503() {
    let f = Faseng::start_with(
        APPS,
        None,
        &[
            ("FASENG_WORKERS", "0"),
            ("FASENG_MAX_PAGE_LOADS", "2"),
            ("FASENG_API_TOKEN", TOKEN),
        ],
    )
    .await;
    let id = queued(&f, 1).await;
    let page = token_signer().url(&f.url, id);
    assert_eq!(get(&page).await.0, 200);

    // Two page loads that cannot finish: the log table is locked, so each waits in
    // its log read, holding its place.
    let mut locker = sqlx::PgConnection::connect(f.database_url()).await.unwrap();
    let mut lock = locker.begin().await.unwrap();
    sqlx::query("LOCK TABLE deployment_logs IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *lock)
        .await
        .unwrap();
    let slow: Vec<_> = (0..2)
        .map(|_| {
            let page = page.clone();
            tokio::spawn(async move { get(&page).await })
        })
        .collect();
    let mut watcher = sqlx::PgConnection::connect(f.database_url()).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND wait_event_type = 'Lock' \
               AND query ILIKE '%deployment_logs%'",
        )
        .fetch_one(&mut watcher)
        .await
        .unwrap();
        if waiting >= 2 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the page loads never reached the log read ({waiting} waiting)"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let refused = "too many page loads at once (2); try again shortly\n";
    assert_refused("a third page load", open(&page, &[]).await, refused).await;
    assert_refused(
        "the index",
        open(&token_signer().index_url(&f.url), &[]).await,
        refused,
    )
    .await;
    let bearer = format!("Bearer {TOKEN}");
    assert_refused(
        "an API log fetch",
        open(
            &format!("{}/api/deployments/{id}/log", f.url),
            &[("authorization", bearer.as_str())],
        )
        .await,
        refused,
    )
    .await;
    // Other API reads, the health check and webhooks are not page loads.
    let (status, _, body) = open(
        &format!("{}/api/deployments/{id}", f.url),
        &[("authorization", bearer.as_str())],
    )
    .await;
    assert_eq!(status, 200, "{}", text_of(body).await);
    others_still_answer(&f, "bounds-pages").await;

    // The log table is free again: the two slow loads finish, and pages load.
    lock.rollback().await.unwrap();
    for load in slow {
        let (status, body) = load.await.unwrap();
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(get(&page).await.0, 200);
    let (status, _, body) = open(
        &format!("{}/api/deployments/{id}/log", f.url),
        &[("authorization", bearer.as_str())],
    )
    .await;
    assert_eq!(status, 200, "{}", text_of(body).await);
}
