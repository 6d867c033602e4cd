//! `POST /webhooks/github`: every bad delivery gets its status code and
//! stores nothing; good ones are acknowledged at once and stored once.

use chima_testkit::fixtures;
use chima_testkit::github::{deployment_event, send_raw_webhook, send_webhook, sign};
use serde_json::json;

use crate::harness::{Faseng, SECRET};

const APPS: &str = r#"{"app": {"provider": "shell", "repository": "example/app", "environments": ["production", "staging"]}}"#;

fn event(id: i64, payload: serde_json::Value) -> Vec<u8> {
    deployment_event(
        "example/app",
        "/nonexistent/repo",
        id,
        "0123456789abcdef0123456789abcdef01234567",
        "main",
        "staging",
        "deploy",
        payload,
    )
    .to_string()
    .into_bytes()
}

#[tokio::test]
async fn bad_deliveries_get_their_status_and_store_nothing() {
    let f = Faseng::start(APPS, None).await;
    let hook = format!("{}/webhooks/github", f.url);
    let body = event(1, json!({}));
    let good_sig = sign(SECRET.as_bytes(), &body);

    // No signature, a wrong one, one over another body, a malformed one.
    let other_sig = sign(SECRET.as_bytes(), b"{}");
    let wrong_secret = sign(b"not-the-secret", &body);
    let cases: Vec<(Vec<(&str, &str)>, u16)> = vec![
        (
            vec![
                ("x-github-event", "deployment"),
                ("x-github-delivery", "d1"),
            ],
            401,
        ),
        (
            vec![
                ("x-github-event", "deployment"),
                ("x-github-delivery", "d1"),
                ("x-hub-signature-256", &wrong_secret),
            ],
            401,
        ),
        (
            vec![
                ("x-github-event", "deployment"),
                ("x-github-delivery", "d1"),
                ("x-hub-signature-256", &other_sig),
            ],
            401,
        ),
        (
            vec![
                ("x-github-event", "deployment"),
                ("x-github-delivery", "d1"),
                ("x-hub-signature-256", "sha256=zz"),
            ],
            401,
        ),
        (
            vec![
                ("x-github-delivery", "d1"),
                ("x-hub-signature-256", &good_sig),
            ],
            400,
        ),
    ];
    for (headers, status) in cases {
        let (got, text) = send_raw_webhook(&hook, &headers, &body).await;
        assert_eq!(got, status, "{headers:?}: {text}");
    }
    // Signed, but not JSON, or JSON that is not an object, or missing fields.
    for bad in [&b"not json"[..], b"[1,2,3]", b"{\"deployment\": {}}"] {
        let (got, text) = send_webhook(&hook, "deployment", "d2", SECRET.as_bytes(), bad).await;
        assert_eq!(got, 400, "{}: {text}", String::from_utf8_lossy(bad));
    }
    // Over 1 MiB.
    let mut big = body.clone();
    big.truncate(big.len() - 1);
    big.extend(std::iter::repeat_n(b' ', 2 * 1024 * 1024));
    big.push(b'}');
    let (got, _) = send_webhook(&hook, "deployment", "d3", SECRET.as_bytes(), &big).await;
    assert_eq!(got, 413);
    assert_eq!(f.count().await, 0, "a refused delivery stored something");
}

#[tokio::test]
async fn a_redelivery_queues_nothing_twice() {
    let f = Faseng::start(APPS, None).await;
    let hook = format!("{}/webhooks/github", f.url);
    let body = event(77, json!({}));
    let (first, text) = send_webhook(
        &hook,
        "deployment",
        "same-delivery",
        SECRET.as_bytes(),
        &body,
    )
    .await;
    assert_eq!(first, 201, "{text}");
    // The same delivery replayed, and the same deployment under a new delivery id.
    let (again, text) = send_webhook(
        &hook,
        "deployment",
        "same-delivery",
        SECRET.as_bytes(),
        &body,
    )
    .await;
    assert_eq!(again, 200, "{text}");
    assert!(text.contains("\"already_existed\":true"), "{text}");
    let (other, _) = send_webhook(
        &hook,
        "deployment",
        "another-delivery",
        SECRET.as_bytes(),
        &body,
    )
    .await;
    assert_eq!(other, 200);
    assert_eq!(f.count().await, 1);
}

#[tokio::test]
async fn ping_and_other_events_are_acknowledged_and_ignored() {
    let f = Faseng::start(APPS, None).await;
    let hook = format!("{}/webhooks/github", f.url);
    let (s, _) = send_webhook(
        &hook,
        "ping",
        "p1",
        SECRET.as_bytes(),
        br#"{"zen": "Keep it logically awesome.", "hook_id": 1}"#,
    )
    .await;
    assert_eq!(s, 200);
    let (s, text) = send_webhook(
        &hook,
        "issues",
        "i1",
        SECRET.as_bytes(),
        br#"{"action": "opened"}"#,
    )
    .await;
    assert_eq!(s, 202, "{text}");
    assert_eq!(f.count().await, 0);
    let (s, metrics) = crate::harness::get(&format!("{}/metrics", f.url)).await;
    assert_eq!(s, 200);
    assert!(
        metrics.contains("faseng_webhooks_received_total{event=\"ping\"} 1"),
        "{metrics}"
    );
}

/// Every real example GitHub publishes (README, "Two commands": REAL_FIXTURES), signed here, is
/// accepted and handled without a 5xx.
#[tokio::test]
#[ignore = "reads the real public examples; run with REAL_FIXTURES=../shared/fixtures"]
async fn real_github_examples_are_handled() {
    let dir = std::env::var("REAL_FIXTURES")
        .expect("set REAL_FIXTURES to the folder of real examples, e.g. ../shared/fixtures");
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let github = root.join(dir).join("github");
    let f = Faseng::start(
        r#"{"hello": {"provider": "shell", "repository": "Codertocat/Hello-World", "environments": ["production"]}}"#,
        None,
    )
    .await;
    let hook = format!("{}/webhooks/github", f.url);
    let mut seen = 0;
    for entry in std::fs::read_dir(&github).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if !name.ends_with(".json") {
            continue;
        }
        let event = name.split('.').next().unwrap();
        let body = std::fs::read(&path).unwrap();
        let (status, text) = send_webhook(
            &hook,
            event,
            &format!("real-{name}"),
            SECRET.as_bytes(),
            &body,
        )
        .await;
        assert!((200..300).contains(&status), "{name}: {status} {text}");
        seen += 1;
    }
    assert!(seen >= 7, "only {seen} examples in {}", github.display());
    // Both deployment examples name deployment 145988746: one job.
    assert_eq!(f.count().await, 1);
}

/// Every fixture, flipped and truncated: with the original signature (tampered
/// in transit) it is refused and nothing is stored; signed anew it never gets
/// a 5xx.
async fn mutated_fixtures(real: bool) {
    let f = Faseng::start(APPS, None).await;
    let hook = format!("{}/webhooks/github", f.url);
    let bodies = fixtures::load("github", real, &[".json"]);
    let mut n = 0;
    for (name, body) in &bodies {
        let event = name.split('.').next().unwrap();
        let original = sign(SECRET.as_bytes(), body);
        for m in fixtures::mutations(body) {
            n += 1;
            let delivery = format!("tamper-{n}");
            let (status, text) = send_raw_webhook(
                &hook,
                &[
                    ("x-github-event", event),
                    ("x-github-delivery", &delivery),
                    ("x-hub-signature-256", &original),
                ],
                &m,
            )
            .await;
            assert_eq!(status, 401, "{name}: tampered body got {status}: {text}");
        }
    }
    assert_eq!(f.count().await, 0, "a tampered delivery stored something");
    for (name, body) in &bodies {
        let event = name.split('.').next().unwrap();
        for m in fixtures::mutations(body) {
            n += 1;
            let (status, text) = send_webhook(
                &hook,
                event,
                &format!("resigned-{n}"),
                SECRET.as_bytes(),
                &m,
            )
            .await;
            assert!((200..500).contains(&status), "{name}: {status} {text}");
        }
    }
    // faseng is still up and answering.
    assert_eq!(
        crate::harness::get(&format!("{}/readyz", f.url)).await.0,
        200
    );
}

#[tokio::test]
async fn mutated_fixtures_never_5xx_and_tampered_ones_store_nothing() {
    mutated_fixtures(false).await;
}

#[tokio::test]
#[ignore = "reads the real public examples; run with REAL_FIXTURES=../shared/fixtures"]
async fn mutated_real_fixtures_never_5xx_and_tampered_ones_store_nothing() {
    mutated_fixtures(true).await;
}

/// The project's own fixtures, as they are: each is accepted.
#[tokio::test]
async fn own_fixtures_are_accepted() {
    let f = Faseng::start(APPS, None).await;
    let hook = format!("{}/webhooks/github", f.url);
    for (name, body) in fixtures::load("github", false, &[".json"]) {
        let event = name.split('.').next().unwrap();
        let (status, text) = send_webhook(
            &hook,
            event,
            &format!("own-{name}"),
            SECRET.as_bytes(),
            &body,
        )
        .await;
        assert!((200..300).contains(&status), "{name}: {status} {text}");
    }
    // The two deployment fixtures are two deployments.
    assert_eq!(f.count().await, 2);
}
