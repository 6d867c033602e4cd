//! What Slack sends to the app rather than answers: Events API envelopes,
//! slash command bodies, and the request signature.

use std::sync::atomic::{AtomicU64, Ordering};

use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Map, Value, json};
use sha2::Sha256;

use super::text::encode;
use super::wire::form_encode;
use super::{APP_ID, BOT_ID, BOT_USER_ID, TEAM_ID};

pub(super) static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A fresh envelope id.
pub fn envelope_id() -> String {
    let n = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    format!("{n:08x}-7e57-4b1d-8c0f-{n:012x}")
}

/// An Events API `event_callback` body (what HTTP posts, and the `payload` of a Socket
/// Mode `events_api` envelope) for a channel `message` typed as `text`: the event carries
/// it as Slack encodes it ([`encode`]). A channel id starting with `D` is a direct message
/// (`channel_type` `im`).
pub fn event_callback_message(
    text: &str,
    channel: &str,
    user: &str,
    ts: &str,
    event_id: &str,
) -> Value {
    event_callback_raw(&encode(text), channel, user, ts, event_id)
}

/// [`event_callback_message`] with `text` sent as given, already in Slack's format.
pub fn event_callback_raw(
    text: &str,
    channel: &str,
    user: &str,
    ts: &str,
    event_id: &str,
) -> Value {
    let channel_type = if channel.starts_with('D') {
        "im"
    } else {
        "channel"
    };
    json!({
        "token": "testkit-verification-token",
        "team_id": TEAM_ID,
        "api_app_id": APP_ID,
        "event": {
            "client_msg_id": format!("{event_id}-msg"),
            "type": "message",
            "text": text,
            "user": user,
            "ts": ts,
            "team": TEAM_ID,
            "channel": channel,
            "event_ts": ts,
            "channel_type": channel_type,
        },
        "type": "event_callback",
        "event_id": event_id,
        "event_time": 1_700_000_000,
        "authorizations": [{
            "enterprise_id": null,
            "team_id": TEAM_ID,
            "user_id": BOT_USER_ID,
            "is_bot": true,
            "is_enterprise_install": false,
        }],
        "is_ext_shared_channel": false,
        "event_context": format!("4-message-{TEAM_ID}-{channel}"),
    })
}

/// A Socket Mode `events_api` envelope around [`event_callback_message`];
/// `retry_attempt` > 0 makes it a redelivery (`retry_reason` `timeout`).
pub fn events_api_message(
    text: &str,
    channel: &str,
    user: &str,
    ts: &str,
    event_id: &str,
    retry_attempt: u32,
) -> Value {
    events_api_envelope(
        event_callback_message(text, channel, user, ts, event_id),
        retry_attempt,
    )
}

/// A Socket Mode `events_api` envelope around any `event_callback` payload.
pub fn events_api_envelope(payload: Value, retry_attempt: u32) -> Value {
    json!({
        "envelope_id": envelope_id(),
        "payload": payload,
        "type": "events_api",
        "accepts_response_payload": false,
        "retry_attempt": retry_attempt,
        "retry_reason": if retry_attempt > 0 { "timeout" } else { "" },
    })
}

/// The message the bot itself posted, as Slack echoes it to apps subscribed to
/// channel messages.
pub fn bot_message(text: &str, channel: &str, ts: &str, event_id: &str) -> Value {
    let mut payload = event_callback_message(text, channel, BOT_USER_ID, ts, event_id);
    payload["event"]["bot_id"] = Value::String(BOT_ID.to_owned());
    payload["event"]["subtype"] = Value::String("bot_message".to_owned());
    events_api_envelope(payload, 0)
}

/// The fields of a slash command, as Slack sends them (form over HTTP, `payload` of a
/// Socket Mode envelope), `text` typed as given and sent encoded ([`encode`]: a command
/// set to escape channels, users and links,
/// <https://api.slack.com/interactivity/slash-commands#app_command_handling>).
pub fn slash_command_fields(
    command: &str,
    text: &str,
    channel: &str,
    user: &str,
) -> Vec<(String, String)> {
    let text = encode(text);
    let text = text.as_str();
    [
        ("token", "testkit-verification-token"),
        ("team_id", TEAM_ID),
        ("team_domain", "testkit"),
        ("channel_id", channel),
        (
            "channel_name",
            if channel.starts_with('D') {
                "directmessage"
            } else {
                "deploys"
            },
        ),
        ("user_id", user),
        ("user_name", "alice"),
        ("command", command),
        ("text", text),
        ("api_app_id", APP_ID),
        ("is_enterprise_install", "false"),
        (
            "response_url",
            "https://hooks.slack.com/commands/T0TESTKIT/1234567890/testkitResponseUrl",
        ),
        ("trigger_id", "1234567890.1234567890.testkittrigger"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// A Socket Mode `slash_commands` envelope.
pub fn slash_command(command: &str, text: &str, channel: &str, user: &str) -> Value {
    let payload: Map<String, Value> = slash_command_fields(command, text, channel, user)
        .into_iter()
        .map(|(k, v)| (k, Value::String(v)))
        .collect();
    json!({
        "envelope_id": envelope_id(),
        "payload": payload,
        "type": "slash_commands",
        "accepts_response_payload": true,
    })
}

/// The form body Slack POSTs for a slash command.
pub fn slash_command_form(command: &str, text: &str, channel: &str, user: &str) -> String {
    let fields = slash_command_fields(command, text, channel, user);
    let pairs: Vec<(&str, &str)> = fields
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    form_encode(&pairs)
}

/// The `X-Slack-Signature` Slack sends: `v0=` + hex HMAC-SHA256 of
/// `v0:{timestamp}:{body}` with the signing secret.
pub fn sign(signing_secret: &str, timestamp: &str, body: &[u8]) -> String {
    let mut mac = match <Hmac<Sha256> as KeyInit>::new_from_slice(signing_secret.as_bytes()) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC takes keys of any length"),
    };
    mac.update(b"v0:");
    mac.update(timestamp.as_bytes());
    mac.update(b":");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("v0={hex}")
}

/// The two headers of a signed request, `X-Slack-Request-Timestamp` (`timestamp`, Unix
/// seconds) and `X-Slack-Signature`.
pub fn signed_headers(
    signing_secret: &str,
    timestamp: i64,
    body: &[u8],
) -> [(&'static str, String); 2] {
    let ts = timestamp.to_string();
    let signature = sign(signing_secret, &ts, body);
    [
        ("x-slack-request-timestamp", ts),
        ("x-slack-signature", signature),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_have_slacks_shape() {
        let a = sign("secret", "1700000000", b"body");
        assert!(a.starts_with("v0=") && a.len() == 67, "{a}");
        assert!(
            a[3..]
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        assert_eq!(a, sign("secret", "1700000000", b"body"));
        assert_ne!(a, sign("other", "1700000000", b"body"));
        assert_ne!(a, sign("secret", "1700000001", b"body"));
        let [(ts_name, ts), (sig_name, sig)] = signed_headers("secret", 1_700_000_000, b"body");
        assert_eq!(
            (ts_name, ts.as_str()),
            ("x-slack-request-timestamp", "1700000000")
        );
        assert_eq!((sig_name, sig), ("x-slack-signature", a));
    }

    #[test]
    fn envelope_ids_are_unique() {
        assert_ne!(envelope_id(), envelope_id());
    }
}
