//! The Events API, slash commands and interactivity over real HTTP: the router served on
//! 127.0.0.1, requests signed as Slack signs them.

use std::sync::Arc;

use axum::http::{Request, StatusCode};
use chima_config::Secret;
use chima_slack::{BODY_LIMIT, Handler, IncomingKind, events_router};
use chima_testkit::fixtures;
use chima_testkit::slack::{self as fake, FakeSlack};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use tokio::task::JoinHandle;

use crate::harness::{Lines, PATIENCE, SIGNING_SECRET, api, gated_recorder, recorder};

struct Served {
    base: String,
    slack: FakeSlack,
    client: Client<HttpConnector, Full<Bytes>>,
    task: JoinHandle<()>,
}

impl Drop for Served {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(handler: Arc<dyn Handler>) -> Served {
    let slack = FakeSlack::start().await;
    let router = events_router(Secret::new(SIGNING_SECRET), api(&slack), handler);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    Served {
        base,
        slack,
        client: Client::builder(TokioExecutor::new()).build_http(),
        task,
    }
}

/// How a test request is signed.
#[derive(Clone, Copy)]
enum Signing {
    /// Correctly, now.
    Now,
    /// Correctly, `secs` ago.
    Ago(i64),
    /// With another secret.
    WrongSecret,
    /// Not at all.
    None,
}

impl Served {
    async fn post(
        &self,
        path: &str,
        content_type: &str,
        body: &[u8],
        signing: Signing,
        extra: &[(&str, &str)],
    ) -> (StatusCode, String) {
        let now = chrono::Utc::now().timestamp();
        let headers = match signing {
            Signing::Now => Some(fake::signed_headers(SIGNING_SECRET, now, body)),
            Signing::Ago(secs) => Some(fake::signed_headers(SIGNING_SECRET, now - secs, body)),
            Signing::WrongSecret => Some(fake::signed_headers("not-the-secret", now, body)),
            Signing::None => None,
        };
        let mut request =
            Request::post(format!("{}{path}", self.base)).header("content-type", content_type);
        for (name, value) in headers.into_iter().flatten() {
            request = request.header(name, value);
        }
        for (name, value) in extra {
            request = request.header(*name, *value);
        }
        let request = request
            .body(Full::new(Bytes::copy_from_slice(body)))
            .expect("request");
        let response = tokio::time::timeout(PATIENCE, self.client.request(request))
            .await
            .expect("an answer in time")
            .expect("an HTTP answer");
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .expect("the body")
            .to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    async fn event(&self, body: &Value, signing: Signing) -> (StatusCode, String) {
        self.post(
            "/slack/events",
            "application/json",
            body.to_string().as_bytes(),
            signing,
            &[],
        )
        .await
    }

    /// Sends a message whose text is `marker` and waits for it: whatever was sent before
    /// has been dispatched (or dropped) by then.
    async fn marker(&self, lines: &mut Lines, marker: &str, ts: &str) {
        let body = fake::event_callback_message(
            marker,
            "C0DEPLOYS",
            "U0ALICE",
            ts,
            &format!("Ev-{marker}"),
        );
        assert_eq!(self.event(&body, Signing::Now).await.0, StatusCode::OK);
        assert_eq!(lines.next(marker).await.text, marker);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn url_verification_is_answered_with_its_challenge() {
    let (handler, mut lines) = recorder();
    let served = serve(handler).await;
    let body = json!({"token": "t", "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7", "type": "url_verification"});
    let (status, answer) = served.event(&body, Signing::Now).await;
    assert_eq!(status, StatusCode::OK);
    let answer: Value = serde_json::from_str(&answer).expect("JSON");
    assert_eq!(
        answer,
        json!({"challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7"})
    );
    // Unsigned, it is not answered.
    let (status, _) = served.event(&body, Signing::None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    served
        .marker(&mut lines, "after", "1700000000.000900")
        .await;
    lines.assert_empty("a verification is not a line").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_event_is_answered_before_it_is_handled() {
    let (handler, mut lines, gate) = gated_recorder();
    let served = serve(handler).await;
    let body = fake::event_callback_message(
        "chima deploy web to production",
        "C0DEPLOYS",
        "U0ALICE",
        "1700000000.000100",
        "Ev1000",
    );
    // The handler blocks; Slack's answer must not wait for it.
    let (status, answer) = served.event(&body, Signing::Now).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer, "");
    gate.add_permits(1);
    let line = lines.next("the event").await;
    assert_eq!(line.text, "chima deploy web to production");
    assert_eq!(line.channel_id, "C0DEPLOYS");
    assert_eq!(line.thread_ts.as_deref(), Some("1700000000.000100"));
    assert_eq!(line.kind, IncomingKind::Message);
    gate.add_permits(1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_signatures_and_stale_timestamps_are_refused_and_not_handled() {
    let (handler, mut lines) = recorder();
    let served = serve(handler).await;
    let body = fake::event_callback_message(
        "chima deploy web",
        "C0DEPLOYS",
        "U0ALICE",
        "1700000000.000100",
        "Ev2000",
    );
    for (signing, why) in [
        (Signing::WrongSecret, "another secret"),
        (Signing::None, "no signature"),
        (Signing::Ago(6 * 60), "six minutes old"),
        (Signing::Ago(-6 * 60), "six minutes ahead"),
    ] {
        let (status, answer) = served.event(&body, signing).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{why}: {answer}");
        assert!(!answer.contains(SIGNING_SECRET), "{answer}");
    }
    // Four and a half minutes old is still within Slack's window.
    let mut recent = body.clone();
    recent["event_id"] = "Ev2001".into();
    recent["event"]["ts"] = "1700000000.000200".into();
    recent["event"]["text"] = "recent".into();
    assert_eq!(
        served.event(&recent, Signing::Ago(270)).await.0,
        StatusCode::OK
    );
    assert_eq!(lines.next("the recent event").await.text, "recent");
    // A signed body changed on the way is refused too.
    let signed = body.to_string();
    let headers = fake::signed_headers(
        SIGNING_SECRET,
        chrono::Utc::now().timestamp(),
        signed.as_bytes(),
    );
    let tampered = signed.replace("chima deploy web", "chima deploy evil");
    let extra: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let (status, _) = served
        .post(
            "/slack/events",
            "application/json",
            tampered.as_bytes(),
            Signing::None,
            &extra,
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    served
        .marker(&mut lines, "marker", "1700000000.000900")
        .await;
    lines.assert_empty("refused requests are not handled").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_event_is_handled_once_and_the_bots_own_messages_never() {
    let (handler, mut lines) = recorder();
    let served = serve(handler).await;
    let body = fake::event_callback_message(
        "chima deploy web",
        "C0DEPLOYS",
        "U0ALICE",
        "1700000000.000100",
        "Ev3000",
    );
    assert_eq!(served.event(&body, Signing::Now).await.0, StatusCode::OK);
    assert_eq!(lines.next("the event").await.text, "chima deploy web");
    for retry in ["1", "2"] {
        let (status, _) = served
            .post(
                "/slack/events",
                "application/json",
                body.to_string().as_bytes(),
                Signing::Now,
                &[
                    ("x-slack-retry-num", retry),
                    ("x-slack-retry-reason", "http_timeout"),
                ],
            )
            .await;
        assert_eq!(status, StatusCode::OK, "retries are acknowledged");
    }
    // The bot's own message, as Slack echoes it (user = the bot, no bot_id): auth.test
    // tells who the bot is.
    let own = fake::event_callback_message(
        "chima deploy web",
        "C0DEPLOYS",
        fake::BOT_USER_ID,
        "1700000000.000200",
        "Ev3001",
    );
    assert_eq!(served.event(&own, Signing::Now).await.0, StatusCode::OK);
    served
        .marker(&mut lines, "marker", "1700000000.000900")
        .await;
    lines
        .assert_empty("a retry and the bot's own message are not handled")
        .await;
    assert!(!served.slack.calls("auth.test").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slash_command_form_becomes_a_slash_command_line() {
    let (handler, mut lines) = recorder();
    let served = serve(handler).await;
    let form =
        fake::slash_command_form("/deploy", "web/feature to staging", "C0DEPLOYS", "U0ALICE");
    let (status, answer) = served
        .post(
            "/slack/commands",
            "application/x-www-form-urlencoded",
            form.as_bytes(),
            Signing::Now,
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let answer: Value = serde_json::from_str(&answer).expect("a JSON answer");
    assert_eq!(answer["response_type"], "ephemeral");
    assert_eq!(
        answer["text"],
        "Working on `/deploy web/feature to staging`…"
    );
    let line = lines.next("the slash command").await;
    assert_eq!(line.text, "web/feature to staging");
    assert_eq!(line.user_name.as_deref(), Some("alice"));
    assert_eq!(line.user_id, "U0ALICE");
    assert_eq!(line.channel_id, "C0DEPLOYS");
    assert!(matches!(
        line.kind,
        IncomingKind::SlashCommand { ref command, .. } if command == "/deploy"
    ));

    let (status, _) = served
        .post(
            "/slack/commands",
            "application/x-www-form-urlencoded",
            form.as_bytes(),
            Signing::WrongSecret,
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = served
        .post(
            "/slack/commands",
            "application/x-www-form-urlencoded",
            b"text=no+command",
            Signing::Now,
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_and_malformed_bodies_are_refused() {
    let (handler, mut lines) = recorder();
    let served = serve(handler).await;
    let huge = vec![b' '; BODY_LIMIT + 1];
    let (status, _) = served
        .post(
            "/slack/events",
            "application/json",
            &huge,
            Signing::Now,
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    // Just under the limit is read (and is not JSON).
    let mut big = vec![b' '; BODY_LIMIT - 2];
    big.extend_from_slice(b"{}");
    let (status, _) = served
        .post("/slack/events", "application/json", &big, Signing::Now, &[])
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "no type in it");

    for bad in [&b"{\"type\": \"event_callback\", "[..], b"[1, 2]", b""] {
        let (status, _) = served
            .post("/slack/events", "application/json", bad, Signing::Now, &[])
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad:?}");
    }
    served
        .marker(&mut lines, "marker", "1700000000.000900")
        .await;
    lines.assert_empty("refused bodies are not handled").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interactions_are_acknowledged_and_health_is_reported() {
    let (handler, _lines) = recorder();
    let served = serve(handler).await;
    let payload = json!({
        "type": "block_actions",
        "user": {"id": "U0ALICE", "username": "alice", "team_id": fake::TEAM_ID},
        "api_app_id": fake::APP_ID,
        "container": {"type": "message", "message_ts": "1700000001.000100", "channel_id": "C0DEPLOYS"},
        "trigger_id": "1.2.3",
        "channel": {"id": "C0DEPLOYS", "name": "deploys"},
        "response_url": "https://hooks.slack.com/actions/T0TESTKIT/1/x",
        "actions": [{"action_id": "view_log", "block_id": "deployment", "type": "button",
                     "text": {"type": "plain_text", "text": "View log"}, "action_ts": "1700000002.000100"}],
    })
    .to_string();
    let form = fake::form_encode(&[("payload", payload.as_str())]);
    let (status, _) = served
        .post(
            "/slack/interactive",
            "application/x-www-form-urlencoded",
            form.as_bytes(),
            Signing::Now,
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    for (body, signing, expected) in [
        (
            form.as_str(),
            Signing::WrongSecret,
            StatusCode::UNAUTHORIZED,
        ),
        ("payload=%7Bnot+json", Signing::Now, StatusCode::BAD_REQUEST),
        ("nothing=here", Signing::Now, StatusCode::BAD_REQUEST),
    ] {
        let (status, _) = served
            .post(
                "/slack/interactive",
                "application/x-www-form-urlencoded",
                body.as_bytes(),
                signing,
                &[],
            )
            .await;
        assert_eq!(status, expected, "{body}");
    }

    let request = Request::get(format!("{}/healthz", served.base))
        .body(Full::new(Bytes::new()))
        .expect("request");
    let response = served.client.request(request).await.expect("answer");
    assert_eq!(response.status(), StatusCode::OK);
}

/// A click on an Approve or Reject button, as Slack posts it to the interactivity URL:
/// the line is made from the button's action and value, and the user is the one
/// Slack's signed payload names. Tampered, unsigned and malformed clicks go nowhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approval_clicks_become_lines_of_the_clicker() {
    let (handler, mut lines) = recorder();
    let served = serve(handler).await;
    let click = |action_id: &str, value: &str, user: &str| {
        json!({
            "type": "block_actions",
            "user": {"id": user, "username": "bob", "team_id": fake::TEAM_ID},
            "api_app_id": fake::APP_ID,
            "container": {"type": "message", "message_ts": "1700000001.000200",
                          "channel_id": "C0DEPLOYS", "thread_ts": "1700000001.000100"},
            "trigger_id": "1.2.3",
            "channel": {"id": "C0DEPLOYS", "name": "deploys"},
            "message": {"type": "message", "ts": "1700000001.000200",
                        "text": "approve 999 -- the message text is never read"},
            "response_url": "https://hooks.slack.com/actions/T0TESTKIT/1/x",
            "actions": [{"action_id": action_id, "block_id": "deployment", "type": "button",
                         "value": value, "style": "primary",
                         "text": {"type": "plain_text", "text": "Approve"},
                         "action_ts": "1700000002.000100"}],
        })
        .to_string()
    };
    let post = |payload: String, signing: Signing| {
        let served = &served;
        async move {
            let form = fake::form_encode(&[("payload", payload.as_str())]);
            served
                .post(
                    "/slack/interactive",
                    "application/x-www-form-urlencoded",
                    form.as_bytes(),
                    signing,
                    &[],
                )
                .await
                .0
        }
    };
    assert_eq!(
        post(click("approve", "12", "U0BOB"), Signing::Now).await,
        StatusCode::OK
    );
    let line = lines.next("the approve click").await;
    assert_eq!(line.text, "approve 12");
    assert_eq!(line.user_id, "U0BOB");
    assert_eq!(line.channel_id, "C0DEPLOYS");
    assert_eq!(line.thread_ts.as_deref(), Some("1700000001.000100"));
    assert!(line.direct);
    assert!(matches!(
        line.kind,
        IncomingKind::Button { ref response_url } if response_url == "https://hooks.slack.com/actions/T0TESTKIT/1/x"
    ));
    assert_eq!(
        post(click("reject", "12", "U0CAROL"), Signing::Now).await,
        StatusCode::OK
    );
    let line = lines.next("the reject click").await;
    assert_eq!(
        (line.text.as_str(), line.user_id.as_str()),
        ("reject 12", "U0CAROL")
    );

    // Unsigned or signed with another secret: refused, never handled.
    for signing in [Signing::None, Signing::WrongSecret, Signing::Ago(3600)] {
        assert_eq!(
            post(click("approve", "12", "U0MALLORY"), signing).await,
            StatusCode::UNAUTHORIZED
        );
    }
    // Hostile or malformed values: not a command.
    for value in [
        "12; rm -rf /",
        "-1",
        "99999999999999999999",
        "",
        "1 2",
        "$(id)",
    ] {
        assert_eq!(
            post(click("approve", value, "U0MALLORY"), Signing::Now).await,
            StatusCode::BAD_REQUEST,
            "{value:?}"
        );
    }
    let no_user = click("approve", "12", "");
    assert_eq!(post(no_user, Signing::Now).await, StatusCode::BAD_REQUEST);
    // Another button (a link) needs nothing.
    assert_eq!(
        post(click("view_log", "12", "U0BOB"), Signing::Now).await,
        StatusCode::OK
    );
    served
        .marker(&mut lines, "marker", "1700000000.000901")
        .await;
    lines
        .assert_empty("refused clicks and link clicks are not handled")
        .await;
}

async fn mutated_fixtures(real: bool) {
    let (handler, mut lines) = recorder();
    let served = serve(handler).await;
    for (name, body) in fixtures::load("slack", real, &[".json", ".form.txt"]) {
        let (path, content_type) = if name.ends_with(".txt") {
            ("/slack/commands", "application/x-www-form-urlencoded")
        } else {
            ("/slack/events", "application/json")
        };
        let now = chrono::Utc::now().timestamp();
        let original: Vec<(String, String)> = fake::signed_headers(SIGNING_SECRET, now, &body)
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        for m in fixtures::mutations(&body) {
            // Tampered in transit: the signature of the original body. Refused, unhandled.
            let extra: Vec<(&str, &str)> = original
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let (status, _) = served
                .post(path, content_type, &m, Signing::None, &extra)
                .await;
            assert_eq!(
                status,
                StatusCode::UNAUTHORIZED,
                "{name}: tampered body accepted"
            );
            // Signed anew: whatever it has become, never a 5xx.
            let (status, answer) = served.post(path, content_type, &m, Signing::Now, &[]).await;
            assert!(status.as_u16() < 500, "{name}: {status} {answer}");
        }
    }
    // Re-signed mutations that are still valid events may reach the handler;
    // tampered ones cannot (401 above). The router is still serving.
    let _ = &mut lines;
    served
        .marker(
            &mut Lines::drain(lines).await,
            "after-mutations",
            "1800000000.000001",
        )
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutated_fixtures_never_5xx_and_tampered_ones_are_refused() {
    mutated_fixtures(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "reads the real public examples; run with REAL_FIXTURES=../shared/fixtures"]
async fn mutated_real_fixtures_never_5xx_and_tampered_ones_are_refused() {
    mutated_fixtures(true).await;
}
