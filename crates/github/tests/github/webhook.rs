//! Webhook signatures and delivery parsing.

use chima_github::webhook::{
    Event, EventError, SignatureError, parse_event, sign, verify_signature,
};
use chima_testkit::github::{deployment_event, send_raw_webhook, send_webhook};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const SECRET: &[u8] = b"webhook secret of the tests";

fn event_body(payload: Value) -> Vec<u8> {
    deployment_event(
        "acme/web",
        "https://github.com/acme/web.git",
        1234,
        "0123456789abcdef0123456789abcdef01234567",
        "topic",
        "production",
        "deploy:migrations",
        payload,
    )
    .to_string()
    .into_bytes()
}

#[test]
fn a_correct_signature_verifies() {
    let body = event_body(json!({}));
    let header = sign(SECRET, &body);
    assert!(
        header.starts_with("sha256=") && header.len() == 7 + 64,
        "{header}"
    );
    assert_eq!(verify_signature(SECRET, &body, Some(&header)), Ok(()));
    // The testkit signs the same way GitHub does.
    assert_eq!(chima_testkit::github::sign(SECRET, &body), header);
}

#[test]
fn bad_signatures_are_refused_with_the_reason() {
    let body = event_body(json!({}));
    let good = sign(SECRET, &body);
    assert_eq!(
        verify_signature(SECRET, &body, None),
        Err(SignatureError::Missing)
    );
    for malformed in [
        "",
        "sha1=0123",
        "0123456789abcdef",
        "sha256=",
        "sha256=xyz",
        "sha256=abcd",
        &good[..good.len() - 1],
        &format!("{good}00"),
    ] {
        assert_eq!(
            verify_signature(SECRET, &body, Some(malformed)),
            Err(SignatureError::Malformed),
            "{malformed:?}"
        );
    }
    assert_eq!(
        verify_signature(b"another secret", &body, Some(&good)),
        Err(SignatureError::Mismatch)
    );
    let mut changed = body.clone();
    changed.push(b' ');
    assert_eq!(
        verify_signature(SECRET, &changed, Some(&good)),
        Err(SignatureError::Mismatch)
    );
    // Every reason reads as a 401 body that says what to check.
    assert!(
        SignatureError::Missing
            .to_string()
            .contains("X-Hub-Signature-256")
    );
    assert!(
        SignatureError::Mismatch
            .to_string()
            .contains("GITHUB_WEBHOOK_SECRET")
    );
}

#[test]
fn a_deployment_delivery_is_read_with_its_payload_as_sent() {
    let payload = json!({"name": "web", "config": {"provider": "shell"}, "notify": {"room": "C1"}});
    let Event::Deployment(d) =
        parse_event("deployment", &event_body(payload.clone())).expect("parses")
    else {
        panic!("not a deployment");
    };
    assert_eq!(d.deployment_id, 1234);
    assert_eq!(d.sha, "0123456789abcdef0123456789abcdef01234567");
    assert_eq!(d.git_ref, "topic");
    assert_eq!(d.task, "deploy:migrations");
    assert_eq!(d.environment, "production");
    assert_eq!(
        d.description.as_deref(),
        Some("chima-bot deploying topic to production")
    );
    assert_eq!(d.payload, payload);
    assert_eq!(d.creator, "chima-bot");
    assert_eq!(d.repository, "acme/web");
    assert_eq!(d.clone_url, "https://github.com/acme/web.git");
    assert_eq!(d.installation_id, None);

    // `{}` and hubot-deploy's encrypted string payload are kept as they are.
    for payload in [json!({}), json!("U2FsdGVkX1+encrypted")] {
        let Ok(Event::Deployment(d)) = parse_event("deployment", &event_body(payload.clone()))
        else {
            panic!("parses");
        };
        assert_eq!(d.payload, payload);
    }
    // A null payload reads as {}.
    let Ok(Event::Deployment(d)) = parse_event("deployment", &event_body(Value::Null)) else {
        panic!("parses");
    };
    assert_eq!(d.payload, json!({}));
}

#[test]
fn the_testkit_event_also_parses_with_octocrab() {
    use octocrab::models::webhook_events::{WebhookEvent, WebhookEventPayload};
    let event = WebhookEvent::try_from_header_and_body("deployment", &event_body(json!({})))
        .expect("octocrab reads the testkit's body");
    assert!(matches!(event.specific, WebhookEventPayload::Deployment(_)));
    assert_eq!(
        event.repository.and_then(|r| r.full_name).as_deref(),
        Some("acme/web")
    );
    assert_eq!(event.sender.map(|s| s.login).as_deref(), Some("chima-bot"));
}

#[test]
fn app_deliveries_carry_the_installation() {
    let mut v: Value = serde_json::from_slice(&event_body(json!({}))).expect("json");
    v["installation"] = json!({"id": 77, "node_id": "MDIz"});
    let Ok(Event::Deployment(d)) = parse_event("deployment", v.to_string().as_bytes()) else {
        panic!("parses");
    };
    assert_eq!(d.installation_id, Some(77));
}

#[test]
fn ping_and_other_events() {
    let ping = json!({"zen": "Keep it logically awesome.", "hook_id": 109948940, "hook": {"type": "Repository"}});
    assert_eq!(
        parse_event("ping", ping.to_string().as_bytes()),
        Ok(Event::Ping {
            zen: Some("Keep it logically awesome.".to_string()),
            hook_id: Some(109948940)
        })
    );
    assert_eq!(
        parse_event("ping", b"{}"),
        Ok(Event::Ping {
            zen: None,
            hook_id: None
        })
    );
    for other in ["deployment_status", "status", "push"] {
        assert_eq!(
            parse_event(other, br#"{"action": "created"}"#),
            Ok(Event::Other {
                event: other.to_string()
            })
        );
    }
}

#[test]
fn unusable_bodies_say_what_is_wrong() {
    let err = parse_event("deployment", b"not json").expect_err("not JSON");
    assert!(matches!(err, EventError::NotJson { .. }), "{err:?}");
    assert!(err.to_string().contains("not JSON"), "{err}");
    let form = parse_event("deployment", b"payload=%7B%7D").expect_err("form");
    assert!(form.to_string().contains("form-encoded"), "{form}");
    assert!(form.to_string().contains("application/json"), "{form}");

    let err = parse_event("deployment", b"[1, 2]").expect_err("array");
    assert_eq!(err, EventError::NotObject { found: "an array" });
    assert_eq!(
        err.to_string(),
        "the body is JSON but not an object (it is an array)"
    );
    assert!(matches!(
        parse_event("ping", b"\"zen\""),
        Err(EventError::NotObject { found: "a string" })
    ));

    let base: Value = serde_json::from_slice(&event_body(json!({}))).expect("json");
    let without = |pointer: &str| {
        let mut v = base.clone();
        let (parent, key) = pointer.rsplit_once('/').expect("a pointer");
        v.pointer_mut(parent)
            .and_then(Value::as_object_mut)
            .expect("parent object")
            .remove(key);
        parse_event("deployment", v.to_string().as_bytes())
    };
    for (pointer, field) in [
        ("/deployment/id", "deployment.id"),
        ("/deployment/sha", "deployment.sha"),
        ("/deployment/ref", "deployment.ref"),
        ("/deployment/environment", "deployment.environment"),
        ("/repository/full_name", "repository.full_name"),
        ("/repository/clone_url", "repository.clone_url"),
        ("/deployment", "deployment"),
        ("/repository", "repository"),
    ] {
        let err = without(pointer).expect_err(field);
        assert_eq!(err.to_string(), format!("`{field}` is missing"));
    }
    // No creator: the sender is who asked.
    let Ok(Event::Deployment(d)) = without("/deployment/creator") else {
        panic!("the sender stands in");
    };
    assert_eq!(d.creator, "chima-bot");

    let mut wrong = base.clone();
    wrong["deployment"]["id"] = json!("1234");
    assert_eq!(
        parse_event("deployment", wrong.to_string().as_bytes())
            .expect_err("string id")
            .to_string(),
        "`deployment.id` is not an integer"
    );
}

/// A one-request HTTP server that answers as faseng's webhook route would, with
/// chima-github's checks: 401 on a bad signature, 400 on a bad body, 200 otherwise.
async fn one_webhook_server() -> (String, tokio::task::JoinHandle<Vec<(String, String)>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!(
        "http://{}/webhooks/github",
        listener.local_addr().expect("addr")
    );
    let task = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.expect("accept");
        let mut data = Vec::new();
        let mut buf = [0u8; 8192];
        let (head_end, length) = loop {
            let n = socket.read(&mut buf).await.expect("read");
            assert!(n > 0, "the request ended early");
            data.extend_from_slice(&buf[..n]);
            if let Some(pos) = data.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&data[..pos]).to_ascii_lowercase();
                let length = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                break (pos + 4, length);
            }
        };
        while data.len() < head_end + length {
            let n = socket.read(&mut buf).await.expect("read body");
            assert!(n > 0, "the body ended early");
            data.extend_from_slice(&buf[..n]);
        }
        let head = String::from_utf8_lossy(&data[..head_end]).into_owned();
        let headers: Vec<(String, String)> = head
            .lines()
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let get = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        let body = &data[head_end..head_end + length];
        let (status, text) = match verify_signature(SECRET, body, get("x-hub-signature-256")) {
            Err(e) => ("401 Unauthorized", e.to_string()),
            Ok(()) => match parse_event(get("x-github-event").unwrap_or_default(), body) {
                Err(e) => ("400 Bad Request", e.to_string()),
                Ok(Event::Deployment(d)) => ("200 OK", format!("queued {}", d.deployment_id)),
                Ok(other) => ("200 OK", format!("{other:?}")),
            },
        };
        let response = format!(
            "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
            text.len()
        );
        socket.write_all(response.as_bytes()).await.expect("write");
        let _ = socket.shutdown().await;
        headers
    });
    (url, task)
}

#[tokio::test]
async fn send_webhook_delivers_a_signed_event() {
    let (url, server) = one_webhook_server().await;
    let body = event_body(json!({"name": "web"}));
    let (status, text) = send_webhook(&url, "deployment", "delivery-1", SECRET, &body).await;
    assert_eq!((status, text.as_str()), (200, "queued 1234"));
    let headers = server.await.expect("server");
    let get = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(get("x-github-event").as_deref(), Some("deployment"));
    assert_eq!(get("x-github-delivery").as_deref(), Some("delivery-1"));
    assert_eq!(get("content-type").as_deref(), Some("application/json"));
    assert!(
        get("user-agent")
            .unwrap_or_default()
            .starts_with("GitHub-Hookshot/")
    );

    let (url, _server) = one_webhook_server().await;
    let (status, text) = send_webhook(&url, "deployment", "delivery-2", b"wrong", &body).await;
    assert_eq!(status, 401, "{text}");
    assert!(text.contains("does not match"), "{text}");

    let (url, _server) = one_webhook_server().await;
    let (status, text) = send_raw_webhook(&url, &[("x-github-event", "deployment")], &body).await;
    assert_eq!(status, 401, "{text}");
    assert!(text.contains("missing"), "{text}");

    let (url, _server) = one_webhook_server().await;
    let (status, text) = send_webhook(&url, "deployment", "delivery-3", SECRET, b"[]").await;
    assert_eq!(status, 400, "{text}");
}
