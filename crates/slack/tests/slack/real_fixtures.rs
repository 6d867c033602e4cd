//! Slack's public examples, read from the folder in `REAL_FIXTURES` (never copied into
//! this repository):
//! `REAL_FIXTURES=../shared/fixtures cargo test -p chima-slack -- --ignored`.

use std::path::{Path, PathBuf};

use chima_slack::{
    IncomingKind, Payload, SignatureError, parse_payload, parse_slash_command_form,
    verify_signature,
};
use chima_testkit::slack::FakeSlack;
use serde_json::Value;
use tokio::sync::watch;

use crate::harness::{PATIENCE, api, config, recorder};

/// `$REAL_FIXTURES/slack`; a relative `REAL_FIXTURES` is taken from the workspace root.
fn slack_examples() -> PathBuf {
    let dir = std::env::var("REAL_FIXTURES").unwrap_or_else(|_| {
        panic!(
            "set REAL_FIXTURES to the folder of the real examples, e.g. \
             REAL_FIXTURES=../shared/fixtures cargo test -p chima-slack -- --ignored"
        )
    });
    let dir = Path::new(&dir);
    let dir = if dir.is_absolute() {
        dir.to_path_buf()
    } else {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../..")
            .join(dir)
    };
    dir.join("slack")
}

fn read(name: &str) -> Vec<u8> {
    let path = slack_examples().join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Every example file, by name.
fn examples() -> Vec<(String, Vec<u8>)> {
    let dir = slack_examples();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no examples in {}", dir.display());
    files
        .into_iter()
        .map(|path| {
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .expect("a UTF-8 file name")
                .to_owned();
            (name, std::fs::read(&path).expect("readable example"))
        })
        .collect()
}

#[test]
#[ignore = "reads REAL_FIXTURES"]
fn slacks_worked_example_of_a_signature_verifies() {
    let meta: Value =
        serde_json::from_slice(&read("slash_command.signed.meta.json")).expect("meta");
    let field = |name: &str| meta[name].as_str().unwrap_or_else(|| panic!("meta.{name}"));
    let body = read(field("body_file"));
    let secret = field("signing_secret").as_bytes();
    let timestamp = field("x_slack_request_timestamp");
    let signature = field("x_slack_signature");
    let now: i64 = timestamp.parse().expect("a number");

    assert_eq!(
        verify_signature(secret, timestamp, &body, signature, now),
        Ok(())
    );
    assert_eq!(chima_slack::sign(secret, timestamp, &body), signature);
    // Checked now, the 2018 example is far too old.
    assert!(matches!(
        verify_signature(
            secret,
            timestamp,
            &body,
            signature,
            chrono::Utc::now().timestamp()
        ),
        Err(SignatureError::Stale { .. })
    ));
    let mut changed = body.clone();
    changed.push(b'x');
    assert_eq!(
        verify_signature(secret, timestamp, &changed, signature, now),
        Err(SignatureError::Mismatch)
    );
    assert_eq!(
        verify_signature(b"another secret", timestamp, &body, signature, now),
        Err(SignatureError::Mismatch)
    );

    // And the body is a slash command we read.
    let line = parse_slash_command_form(&body).expect("the signed slash command");
    assert_eq!(line.channel_id, "G8PSS9T3V");
    assert_eq!(line.user_id, "U2CERLKJA");
    assert_eq!(line.user_name.as_deref(), Some("roadrunner"));
    assert_eq!(line.text, "");
    assert!(matches!(
        line.kind,
        IncomingKind::SlashCommand { ref command, ref response_url }
            if command == "/webhook-collect" && response_url.starts_with("https://hooks.slack.com/commands/")
    ));
}

#[test]
#[ignore = "reads REAL_FIXTURES"]
fn every_real_payload_is_read_or_ignored_without_error() {
    let mut lines = 0;
    for (name, body) in examples() {
        if name.ends_with(".form.txt") {
            let line = parse_slash_command_form(&body).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(line.kind != IncomingKind::Message, "{name}");
            lines += 1;
            continue;
        }
        if !name.ends_with(".json") {
            continue;
        }
        let value: Value = serde_json::from_slice(&body).unwrap_or_else(|e| panic!("{name}: {e}"));
        if value.get("type").is_none() {
            // What the app sends (an ack) or our notes about an example: not a payload.
            assert!(
                name == "socket_mode.ack.json" || name.ends_with(".meta.json"),
                "{name} has no type"
            );
            continue;
        }
        let payload =
            parse_payload(&body, Some("U0CHIMA")).unwrap_or_else(|e| panic!("{name}: {e}"));
        match (name.as_str(), &payload) {
            ("url_verification.json", Payload::UrlVerification { challenge }) => {
                assert!(!challenge.is_empty());
            }
            (n, Payload::Line { incoming, event_id })
                if n.starts_with("event_callback.") || n.starts_with("socket_mode.events_api.") =>
            {
                assert!(event_id.is_some(), "{name}");
                assert!(!incoming.text.is_empty(), "{name}");
                assert!(incoming.thread_ts.is_some(), "{name}");
                let mention = n.contains("app_mention");
                assert_eq!(incoming.kind == IncomingKind::Mention, mention, "{name}");
                assert_eq!(incoming.direct, n.contains(".im."), "{name}");
                lines += 1;
            }
            (n, Payload::Line { incoming, .. }) if n.starts_with("socket_mode.slash_commands") => {
                assert!(
                    matches!(incoming.kind, IncomingKind::SlashCommand { .. }),
                    "{name}"
                );
                lines += 1;
            }
            (n, Payload::Ignored { .. })
                if n.starts_with("socket_mode.hello")
                    || n.starts_with("socket_mode.disconnect")
                    || n.starts_with("interactive.") => {}
            (_, other) => panic!("{name}: unexpected {other:?}"),
        }
    }
    assert!(lines >= 9, "only {lines} lines read from the examples");
}

/// The real envelopes, sent by the fake over a real Socket Mode connection: each is
/// acknowledged, and the lines they carry reach the handler, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "reads REAL_FIXTURES"]
async fn real_envelopes_over_socket_mode() {
    let slack = FakeSlack::start().await;
    let (handler, mut lines) = recorder();
    let (stop, shutdown) = watch::channel(false);
    let task = tokio::spawn(chima_slack::run_socket_mode(
        config(&slack),
        api(&slack),
        handler,
        shutdown,
    ));
    slack
        .wait_for("a connection", PATIENCE, |s| s.live_connections() == 1)
        .await;
    let mut ids = Vec::new();
    for name in [
        "socket_mode.events_api.message.json",
        // The same event (Ev111) as an app_mention, and redelivered: handled once.
        "socket_mode.events_api.app_mention.json",
        "socket_mode.events_api.message.retry.json",
        "socket_mode.slash_commands.json",
        "socket_mode.slash_commands.docs.json",
    ] {
        let envelope: Value = serde_json::from_slice(&read(name)).expect(name);
        ids.push(envelope["envelope_id"].as_str().expect("an id").to_owned());
        slack.push_event(envelope);
    }
    // Handlers run in tasks of their own: the lines may arrive in any order.
    let mut messages = Vec::new();
    let mut commands = Vec::new();
    for _ in 0..3 {
        let line = lines.next("a line of the examples").await;
        match line.kind {
            IncomingKind::SlashCommand { command, .. } => commands.push(command),
            IncomingKind::Message => messages.push((line.text, line.channel_id)),
            IncomingKind::Mention => panic!("Ev111 was already handled as a message"),
            IncomingKind::Button { .. } => panic!("no example is a click on our buttons"),
        }
    }
    assert_eq!(
        messages,
        [("<@U111> Hi here!".to_owned(), "C111".to_owned())]
    );
    commands.sort();
    assert_eq!(commands, ["/hello-socket-mode", "/randorilke"]);
    for id in &ids {
        slack
            .wait_for(&format!("the ack of {id}"), PATIENCE, |s| {
                s.acks().contains(id)
            })
            .await;
    }
    lines.assert_empty("Ev111 is one event").await;
    let _ = stop.send(true);
    let result = tokio::time::timeout(PATIENCE, task)
        .await
        .expect("stops")
        .expect("no panic");
    assert_eq!(result, Ok(()));
}
