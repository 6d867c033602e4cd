//! Socket Mode against the fake Slack: slack-morphism's real listener on a real
//! WebSocket.

use std::sync::Arc;

use chima_config::Secret;
use chima_slack::{Handler, IncomingKind, SlackError, run_socket_mode};
use chima_testkit::slack::{self as fake, FakeSlack};
use serde_json::Value;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::harness::{Lines, PATIENCE, api, config, recorder};

/// Socket Mode running against a fake, and how to stop it.
struct Running {
    slack: FakeSlack,
    lines: Lines,
    stop: watch::Sender<bool>,
    task: JoinHandle<Result<(), SlackError>>,
}

impl Running {
    async fn start() -> Running {
        let slack = FakeSlack::start().await;
        let (handler, lines) = recorder();
        let (stop, shutdown) = watch::channel(false);
        let task = tokio::spawn(run_socket_mode(
            config(&slack),
            api(&slack),
            handler,
            shutdown,
        ));
        slack
            .wait_for("the first connection", PATIENCE, |s| {
                s.live_connections() == 1
            })
            .await;
        Running {
            slack,
            lines,
            stop,
            task,
        }
    }

    /// Pushes an envelope; returns its id.
    fn push(&self, envelope: Value) -> String {
        let id = envelope_id(&envelope);
        self.slack.push_event(envelope);
        id
    }

    async fn acked(&self, envelope_id: &str) {
        self.slack
            .wait_for(&format!("the ack of {envelope_id}"), PATIENCE, |s| {
                s.acks().iter().any(|a| a == envelope_id)
            })
            .await;
    }

    /// Pushes a message with `marker` as text and waits for the handler to get it:
    /// whatever was pushed before has been dispatched (or dropped) by then.
    async fn marker(&mut self, marker: &str, ts: &str) {
        self.push(fake::events_api_message(
            marker,
            "C0DEPLOYS",
            "U0ALICE",
            ts,
            &format!("Ev-{marker}"),
            0,
        ));
        let line = self.lines.next(marker).await;
        assert_eq!(
            line.text, marker,
            "a line pushed before the marker got through"
        );
    }

    async fn stop(self) -> FakeSlack {
        let _ = self.stop.send(true);
        let result = tokio::time::timeout(PATIENCE, self.task)
            .await
            .expect("Socket Mode stops when told")
            .expect("the Socket Mode task did not panic");
        assert_eq!(result, Ok(()));
        self.slack
    }
}

fn envelope_id(envelope: &Value) -> String {
    envelope["envelope_id"]
        .as_str()
        .expect("an envelope id")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_reaches_the_handler_with_its_channel_and_thread() {
    let mut run = Running::start().await;
    // Both tokens were checked first, each with its own.
    let auth = run.slack.calls("auth.test");
    assert_eq!(
        auth[0].authorization.as_deref(),
        Some(format!("Bearer {}", fake::BOT_TOKEN).as_str())
    );
    // One apps.connections.open (Tier 1) for the one connection: the start's check
    // gave the URL the connection used.
    let open = run.slack.calls("apps.connections.open");
    assert_eq!(open.len(), 1, "one call per connection attempt: {open:?}");
    assert!(open.iter().all(
        |c| c.authorization.as_deref() == Some(format!("Bearer {}", fake::APP_TOKEN).as_str())
    ));

    let id = run.push(fake::events_api_message(
        "chima deploy x",
        "C0DEPLOYS",
        "U0ALICE",
        "1700000000.000100",
        "Ev0001",
        0,
    ));
    let line = run.lines.next("the deploy line").await;
    assert_eq!(line.text, "chima deploy x");
    assert_eq!(line.channel_id, "C0DEPLOYS");
    assert_eq!(line.user_id, "U0ALICE");
    assert_eq!(line.ts.as_deref(), Some("1700000000.000100"));
    assert_eq!(line.thread_ts.as_deref(), Some("1700000000.000100"));
    assert_eq!(line.kind, IncomingKind::Message);
    assert!(!line.direct);
    run.acked(&id).await;

    // In a thread, and in a direct message.
    let mut in_thread = fake::events_api_message(
        "chima deploys x",
        "D0ALICE",
        "U0ALICE",
        "1700000000.000300",
        "Ev0002",
        0,
    );
    in_thread["payload"]["event"]["thread_ts"] = "1700000000.000200".into();
    let id = run.push(in_thread);
    let line = run.lines.next("the threaded line").await;
    assert_eq!(line.thread_ts.as_deref(), Some("1700000000.000200"));
    assert!(line.direct);
    run.acked(&id).await;

    let slack = run.stop().await;
    assert_eq!(slack.connections(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redeliveries_and_bot_messages_are_acked_but_handled_once_or_never() {
    let mut run = Running::start().await;
    let first = run.push(fake::events_api_message(
        "chima deploy x",
        "C0DEPLOYS",
        "U0ALICE",
        "1700000000.000100",
        "Ev0100",
        0,
    ));
    assert_eq!(
        run.lines.next("the first delivery").await.text,
        "chima deploy x"
    );
    // Slack did not see the ack in time and sends the event again.
    let retry = run.push(fake::events_api_message(
        "chima deploy x",
        "C0DEPLOYS",
        "U0ALICE",
        "1700000000.000100",
        "Ev0100",
        1,
    ));
    // The same message as an app_mention (another event id, same channel and ts).
    let mut mention = fake::events_api_message(
        "@chima deploy x",
        "C0DEPLOYS",
        "U0ALICE",
        "1700000000.000100",
        "Ev0101",
        0,
    );
    mention["payload"]["event"]["type"] = "app_mention".into();
    let mention = run.push(mention);
    // The bot's own messages, with and without a bot_id.
    let own = run.push(fake::bot_message(
        "alice's deployment #1 of x/main to production is running.",
        "C0DEPLOYS",
        "1700000000.000400",
        "Ev0102",
    ));
    let own_plain = run.push(fake::events_api_message(
        "chima deploy y",
        "C0DEPLOYS",
        fake::BOT_USER_ID,
        "1700000000.000500",
        "Ev0103",
        0,
    ));
    // An edit and an unrelated event.
    let mut edit = fake::events_api_message(
        "chima deploy z",
        "C0DEPLOYS",
        "U0ALICE",
        "1700000000.000600",
        "Ev0104",
        0,
    );
    edit["payload"]["event"]["subtype"] = "message_changed".into();
    let edit = run.push(edit);
    let reaction = run.push(fake::events_api_envelope(
        serde_json::json!({
            "type": "event_callback", "team_id": fake::TEAM_ID, "api_app_id": fake::APP_ID,
            "event_id": "Ev0105", "event_time": 1_700_000_000,
            "event": {"type": "reaction_added", "user": "U0ALICE", "reaction": "tada",
                      "item": {"type": "message", "channel": "C0DEPLOYS", "ts": "1700000000.000100"},
                      "event_ts": "1700000000.000700"},
        }),
        0,
    ));

    run.marker("marker one", "1700000000.000800").await;
    run.lines
        .assert_empty("redeliveries and bot messages are not handled")
        .await;
    for id in [first, retry, mention, own, own_plain, edit, reaction] {
        run.acked(&id).await;
    }
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disconnect_frame_reconnects_and_the_next_event_is_handled() {
    let mut run = Running::start().await;
    run.marker("before", "1700000000.000100").await;

    run.slack.disconnect("refresh_requested");
    let id = run.push(fake::events_api_message(
        "chima deploy after-refresh",
        "C0DEPLOYS",
        "U0ALICE",
        "1700000000.000200",
        "Ev0200",
        0,
    ));
    let line = run.lines.next("the line after the refresh").await;
    assert_eq!(line.text, "chima deploy after-refresh");
    run.acked(&id).await;
    assert_eq!(run.slack.connections(), 2);

    // And again: a warning is followed by a new connection too.
    run.slack.disconnect("warning");
    run.marker("after-warning", "1700000000.000300").await;
    assert_eq!(run.slack.connections(), 3);
    // Exactly one apps.connections.open per connection, the first included.
    assert_eq!(run.slack.calls("apps.connections.open").len(), 3);
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limited_reconnection_waits_for_retry_after() {
    let mut run = Running::start().await;
    run.marker("before", "1700000000.000100").await;
    // Slack answers the next apps.connections.open with 429, Retry-After: 3
    // (https://api.slack.com/apis/rate-limits).
    run.slack.fail_next(
        "apps.connections.open",
        1,
        fake::Failure::RateLimited {
            retry_after_secs: 3,
        },
    );
    run.slack.drop_connection();
    run.marker("after-the-wait", "1700000000.000200").await;
    let open = run.slack.calls("apps.connections.open");
    assert_eq!(
        open.len(),
        3,
        "start, the refused call, the call after the wait"
    );
    let waited = open[2].at.duration_since(open[1].at);
    assert!(
        waited >= std::time::Duration::from_secs(3),
        "the next call came {waited:?} after the 429"
    );
    assert_eq!(run.slack.connections(), 2);
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lines_arrive_as_typed_not_as_slack_encodes_them() {
    let mut run = Running::start().await;
    // Typed in Slack's client; the fake sends them the way Slack does.
    run.push(fake::events_api_message(
        "@chima deploy app to staging/web1.example.com",
        "C0DEPLOYS",
        "U0ALICE",
        "1700000000.000100",
        "Ev0400",
        0,
    ));
    let sent = run.slack.sent_frames();
    let sent = sent.last().expect("the envelope")["payload"]["event"]["text"].clone();
    assert_eq!(
        sent,
        "<@U0CHIMA> deploy app to staging/<http://web1.example.com|web1.example.com>"
    );
    let line = run.lines.next("the mention").await;
    assert_eq!(
        line.text,
        "<@U0CHIMA> deploy app to staging/web1.example.com"
    );

    let id = run.push(fake::slash_command(
        "/deploy",
        "lock app in production db & cache, ask @alice in #deploys",
        "C0DEPLOYS",
        "U0ALICE",
    ));
    let line = run.lines.next("the slash command").await;
    assert_eq!(
        line.text,
        "lock app in production db & cache, ask @U0ALICE in #deploys"
    );
    run.acked(&id).await;
    let ack = run
        .slack
        .ack_frames()
        .into_iter()
        .find(|a| a["envelope_id"] == id.as_str())
        .expect("the slash command's ack");
    assert_eq!(
        ack["payload"]["text"],
        "Working on `/deploy lock app in production db &amp; cache, ask @U0ALICE in #deploys`…",
        "echoed as typed, escaped once"
    );
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_connection_reconnects_and_the_next_event_is_handled() {
    let mut run = Running::start().await;
    run.marker("before", "1700000000.000100").await;

    run.slack.drop_connection();
    let id = run.push(fake::events_api_message(
        "chima deploy after-drop",
        "C0DEPLOYS",
        "U0ALICE",
        "1700000000.000200",
        "Ev0300",
        0,
    ));
    let line = run.lines.next("the line after the drop").await;
    assert_eq!(line.text, "chima deploy after-drop");
    run.acked(&id).await;
    assert_eq!(run.slack.connections(), 2);

    run.slack.drop_connection();
    run.marker("after-second-drop", "1700000000.000300").await;
    assert_eq!(run.slack.connections(), 3);
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slash_command_is_acked_with_working_on_it_and_handled() {
    let mut run = Running::start().await;
    let id = run.push(fake::slash_command(
        "/deploy",
        "web/feature to production",
        "C0DEPLOYS",
        "U0ALICE",
    ));
    let line = run.lines.next("the slash command").await;
    assert_eq!(line.text, "web/feature to production");
    assert_eq!(line.channel_id, "C0DEPLOYS");
    assert_eq!(line.user_id, "U0ALICE");
    assert_eq!(line.ts, None);
    match &line.kind {
        IncomingKind::SlashCommand {
            command,
            response_url,
        } => {
            assert_eq!(command, "/deploy");
            assert!(response_url.starts_with("https://hooks.slack.com/commands/"));
        }
        other => panic!("not a slash command: {other:?}"),
    }
    run.acked(&id).await;
    let ack = run
        .slack
        .ack_frames()
        .into_iter()
        .find(|a| a["envelope_id"] == id.as_str())
        .expect("the ack frame");
    assert_eq!(ack["payload"]["response_type"], "ephemeral");
    assert_eq!(
        ack["payload"]["text"],
        "Working on `/deploy web/feature to production`…"
    );
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_or_missing_tokens_fail_at_once() {
    let slack = FakeSlack::start().await;
    let (handler, _lines) = recorder();
    let (_stop, shutdown) = watch::channel(false);

    let mut cfg = config(&slack);
    cfg.app_token = None;
    let err = run(cfg, &slack, Arc::clone(&handler), shutdown.clone()).await;
    assert!(matches!(err, SlackError::Config(_)), "{err:?}");
    assert!(err.to_string().contains("SLACK_APP_TOKEN"), "{err}");

    let mut cfg = config(&slack);
    cfg.app_token = Some(Secret::new("xapp-1-wrong-secret-value"));
    let err = run(cfg, &slack, Arc::clone(&handler), shutdown.clone()).await;
    assert_eq!(err.api_code(), Some("invalid_auth"), "{err:?}");
    assert!(!err.to_string().contains("wrong-secret"), "{err}");

    let mut cfg = config(&slack);
    cfg.bot_token = Secret::new("xoxb-wrong-secret-value");
    let api = chima_slack::SlackApi::new(&cfg).expect("client");
    let err = tokio::time::timeout(PATIENCE, run_socket_mode(cfg, api, handler, shutdown))
        .await
        .expect("fails at once")
        .expect_err("a wrong bot token");
    assert_eq!(err.api_code(), Some("invalid_auth"), "{err:?}");
    assert!(!err.to_string().contains("wrong-secret"), "{err}");
    assert_eq!(slack.connections(), 0);
}

async fn run(
    cfg: chima_slack::SlackConfig,
    slack: &FakeSlack,
    handler: Arc<dyn Handler>,
    shutdown: watch::Receiver<bool>,
) -> SlackError {
    tokio::time::timeout(
        PATIENCE,
        run_socket_mode(cfg, api(slack), handler, shutdown),
    )
    .await
    .expect("fails at once")
    .expect_err("refused")
}
