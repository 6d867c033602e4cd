//! What reaches the bot, whatever the transport: Slack's JSON (Events API bodies, Socket
//! Mode envelopes, interaction payloads) and slash-command forms, read into one
//! [`Incoming`], or set aside with the reason.
//!
//! The reading is our own (on `serde_json::Value`), not slack-morphism's models: those
//! are strict about fields we do not need, and a chat line must never be lost because an
//! unrelated field changed shape.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde_json::Value;

use crate::manifest;

/// A chat line that reached the bot, from any transport.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incoming {
    /// The text as typed, decoded from Slack's format by [`crate::decode`]: entities,
    /// links and mentions read as what the person typed (`prod/web1.example.com`, not
    /// `prod/<http://web1.example.com|web1.example.com>`), except a user mention starting
    /// the line, kept as Slack sent it because it addresses the bot
    /// (`<@U0CHIMA> deploy web`). For a slash command, the text after the command:
    /// `/deploy web to prod` gives `web to prod` (the command is in
    /// [`IncomingKind::SlashCommand`]).
    pub text: String,
    /// The channel id (`C...`, `D...` for a direct message).
    pub channel_id: String,
    /// The user id (`U...`): permissions are checked against it, never the name.
    pub user_id: String,
    /// The user's name when the payload carries it (slash commands over HTTP).
    pub user_name: Option<String>,
    /// The message's own ts (`None` for slash commands).
    pub ts: Option<String>,
    /// The thread to reply in: the `thread_ts` of the message, else its `ts`.
    pub thread_ts: Option<String>,
    /// A direct message to the bot (`channel_type` `im`): no prefix needed.
    pub direct: bool,
    /// How it reached the bot.
    pub kind: IncomingKind,
}

/// How the line reached the bot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IncomingKind {
    /// A message in a channel the bot is in, or a direct message.
    Message,
    /// An `app_mention` event: someone wrote `<@bot>`.
    Mention,
    /// A slash command such as `/deploy web to prod`.
    SlashCommand {
        /// With its slash, e.g. `/deploy`.
        command: String,
        /// Where replies to the command can go for 30 minutes.
        response_url: String,
    },
    /// A click on a deployment message's Approve or Reject button (`block_actions`):
    /// the line is `approve <id>` or `reject <id>`, made from the button's action and
    /// value, and the user is the clicker Slack's signed payload names, never anything
    /// in the message.
    Button {
        /// Where the answer to the clicker goes (ephemeral: only they see it).
        response_url: String,
    },
}

/// What the bot does with chat lines. Called in a task of its own, after Slack has been
/// answered; it replies itself (through [`crate::SlackApi`] or the response URL).
#[async_trait]
pub trait Handler: Send + Sync + 'static {
    /// Handles one line.
    async fn handle(&self, incoming: Incoming);
}

/// What a Slack payload is, for the bot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// A line for the handler. `event_id` is the Events API's id (a redelivery carries
    /// the same one).
    Line {
        /// The line.
        incoming: Incoming,
        /// The Events API's id, by which a redelivery is recognised and dropped.
        event_id: Option<String>,
    },
    /// The Events API's `url_verification`: answer with the challenge.
    UrlVerification {
        /// The value to send back.
        challenge: String,
    },
    /// Nothing for the handler (a `hello`, another bot's message, an edit, an event type
    /// the bot does not use...), with why.
    Ignored {
        /// Why it is ignored, for the log.
        why: String,
        /// The Events API's id, when the payload had one.
        event_id: Option<String>,
    },
}

/// A payload that is not what Slack sends.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed Slack payload: {0}")]
pub struct PayloadError(pub String);

/// Reads any JSON Slack sends: an Events API body (`url_verification`,
/// `event_callback`, `app_rate_limited`), a Socket Mode frame (`hello`, `disconnect`,
/// `events_api`, `slash_commands`, `interactive`) or an interaction payload
/// (`block_actions`, ...). `bot_user_id`, when known, sets the bot's own messages aside.
pub fn parse_payload(json: &[u8], bot_user_id: Option<&str>) -> Result<Payload, PayloadError> {
    let value: Value =
        serde_json::from_slice(json).map_err(|e| PayloadError(format!("not JSON: {e}")))?;
    parse_value(&value, bot_user_id)
}

pub(crate) fn parse_value(
    value: &Value,
    bot_user_id: Option<&str>,
) -> Result<Payload, PayloadError> {
    let Some(object) = value.as_object() else {
        return Err(PayloadError("not a JSON object".to_owned()));
    };
    let Some(kind) = object.get("type").and_then(Value::as_str) else {
        return Err(PayloadError("no `type`".to_owned()));
    };
    match kind {
        "url_verification" => match str_field(value, "challenge") {
            Some(challenge) => Ok(Payload::UrlVerification {
                challenge: challenge.to_owned(),
            }),
            None => Err(PayloadError(
                "url_verification without a challenge".to_owned(),
            )),
        },
        "event_callback" => event_callback(value, bot_user_id),
        // Socket Mode envelopes: the payload is what HTTP would have carried.
        "events_api" => match value.get("payload") {
            Some(payload) => event_callback(payload, bot_user_id),
            None => Err(PayloadError(
                "events_api envelope without a payload".to_owned(),
            )),
        },
        "slash_commands" => match value.get("payload") {
            Some(payload) => slash_command_json(payload).map(|incoming| Payload::Line {
                incoming,
                event_id: None,
            }),
            None => Err(PayloadError(
                "slash_commands envelope without a payload".to_owned(),
            )),
        },
        "hello" | "disconnect" => Ok(ignored(format!("a Socket Mode {kind} frame"), None)),
        "app_rate_limited" => {
            tracing::warn!("Slack says the app is rate-limited: events are being dropped");
            Ok(ignored("app_rate_limited".to_owned(), None))
        }
        // Socket Mode: the interaction payload inside the envelope.
        "interactive" => match value.get("payload") {
            Some(payload)
                if payload.get("type").and_then(Value::as_str) == Some("block_actions") =>
            {
                block_actions(payload)
            }
            _ => Ok(ignored(
                format!(
                    "an interaction ({})",
                    value
                        .pointer("/payload/type")
                        .and_then(Value::as_str)
                        .unwrap_or("unknown")
                ),
                None,
            )),
        },
        "block_actions" => block_actions(value),
        "view_submission" | "view_closed" | "shortcut" | "message_action" | "block_suggestion" => {
            Ok(ignored(format!("an interaction ({kind})"), None))
        }
        other => Ok(ignored(format!("payload type {other}"), None)),
    }
}

/// The action ids of the buttons a click on which is a command (see
/// `crate::render`): the approval buttons of a deployment waiting for approval.
const DECISION_ACTIONS: &[&str] = &[crate::render::APPROVE_ACTION, crate::render::REJECT_ACTION];

/// A `block_actions` payload
/// (<https://api.slack.com/reference/interaction-payloads/block-actions>): a click on
/// an Approve or Reject button becomes the line `approve <id>` / `reject <id>`, by the
/// user Slack names (`user.id`), in the message's channel and thread. Other buttons
/// (the "View log" link) need nothing. The value must be a deployment number; the
/// message's text is never read.
fn block_actions(value: &Value) -> Result<Payload, PayloadError> {
    let actions = value
        .get("actions")
        .and_then(Value::as_array)
        .ok_or_else(|| PayloadError("block_actions without actions".to_owned()))?;
    let Some(action) = actions.iter().find(|a| {
        a.get("type").and_then(Value::as_str) == Some("button")
            && a.get("action_id")
                .and_then(Value::as_str)
                .is_some_and(|id| DECISION_ACTIONS.contains(&id))
    }) else {
        return Ok(ignored(
            "a click on a button that is only a link".to_owned(),
            None,
        ));
    };
    let verb = action
        .get("action_id")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let id = action
        .get("value")
        .and_then(Value::as_str)
        .filter(|v| !v.is_empty() && v.len() <= 18 && v.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| PayloadError(format!("a `{verb}` button without a deployment number")))?;
    let user_id = value
        .pointer("/user/id")
        .and_then(Value::as_str)
        .filter(|u| !u.is_empty())
        .ok_or_else(|| PayloadError("block_actions without user.id".to_owned()))?;
    let channel_id = value
        .pointer("/channel/id")
        .or_else(|| value.pointer("/container/channel_id"))
        .and_then(Value::as_str)
        .filter(|c| !c.is_empty())
        .ok_or_else(|| PayloadError("block_actions without a channel".to_owned()))?;
    let response_url = value
        .get("response_url")
        .and_then(Value::as_str)
        .filter(|u| !u.is_empty())
        .ok_or_else(|| PayloadError("block_actions without a response_url".to_owned()))?;
    // The message's thread, where the deployment's news goes: its thread_ts when it
    // is a reply, else its own ts.
    let thread_ts = value
        .pointer("/container/thread_ts")
        .or_else(|| value.pointer("/message/thread_ts"))
        .or_else(|| value.pointer("/container/message_ts"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    Ok(Payload::Line {
        incoming: Incoming {
            text: format!("{verb} {id}"),
            channel_id: channel_id.to_owned(),
            user_id: user_id.to_owned(),
            user_name: None,
            ts: None,
            thread_ts,
            direct: true,
            kind: IncomingKind::Button {
                response_url: response_url.to_owned(),
            },
        },
        event_id: None,
    })
}

fn ignored(why: String, event_id: Option<String>) -> Payload {
    Payload::Ignored { why, event_id }
}

fn str_field<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    value.get(key).and_then(Value::as_str)
}

fn non_empty<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    str_field(value, key).filter(|s| !s.is_empty())
}

/// Message subtypes that are still a person writing to the bot.
const PERSON_SUBTYPES: &[&str] = &["thread_broadcast", "file_share"];

fn event_callback(body: &Value, bot_user_id: Option<&str>) -> Result<Payload, PayloadError> {
    let event_id = str_field(body, "event_id").map(str::to_owned);
    let Some(event) = body.get("event").filter(|e| e.is_object()) else {
        return Err(PayloadError("event_callback without an event".to_owned()));
    };
    let kind = match str_field(event, "type") {
        Some(manifest::EVENT_MESSAGE) => IncomingKind::Message,
        Some(manifest::EVENT_APP_MENTION) => IncomingKind::Mention,
        Some(other) => return Ok(ignored(format!("event type {other}"), event_id)),
        None => return Err(PayloadError("event without a type".to_owned())),
    };
    if let Some(subtype) = non_empty(event, "subtype")
        && !PERSON_SUBTYPES.contains(&subtype)
    {
        return Ok(ignored(format!("message subtype {subtype}"), event_id));
    }
    if non_empty(event, "bot_id").is_some() || event.get("bot_profile").is_some() {
        return Ok(ignored("a bot's message".to_owned(), event_id));
    }
    let Some(user) = non_empty(event, "user") else {
        return Ok(ignored("a message without a user".to_owned(), event_id));
    };
    if bot_user_id.is_some_and(|bot| bot == user) {
        return Ok(ignored("the bot's own message".to_owned(), event_id));
    }
    let Some(channel) = non_empty(event, "channel") else {
        return Ok(ignored("a message without a channel".to_owned(), event_id));
    };
    let text = str_field(event, "text").unwrap_or("");
    if text.trim().is_empty() {
        return Ok(ignored("a message without text".to_owned(), event_id));
    }
    let ts = non_empty(event, "ts").map(str::to_owned);
    let thread_ts = non_empty(event, "thread_ts")
        .map(str::to_owned)
        .or_else(|| ts.clone());
    Ok(Payload::Line {
        incoming: Incoming {
            text: crate::mrkdwn::decode(text),
            channel_id: channel.to_owned(),
            user_id: user.to_owned(),
            user_name: None,
            ts,
            thread_ts,
            direct: str_field(event, "channel_type") == Some("im"),
            kind,
        },
        event_id,
    })
}

/// A slash command from its fields (JSON in Socket Mode, a form over HTTP).
fn slash_command_json(payload: &Value) -> Result<Incoming, PayloadError> {
    let field = |key: &str| non_empty(payload, key);
    let command = field("command")
        .ok_or_else(|| PayloadError("slash command without a command".to_owned()))?;
    let channel = field("channel_id")
        .ok_or_else(|| PayloadError("slash command without a channel_id".to_owned()))?;
    let user = field("user_id")
        .ok_or_else(|| PayloadError("slash command without a user_id".to_owned()))?;
    Ok(Incoming {
        // Slack encodes a slash command's text as it does messages (entities always;
        // links and mentions when the command escapes them):
        // https://api.slack.com/interactivity/slash-commands#app_command_handling
        text: crate::mrkdwn::decode(str_field(payload, "text").unwrap_or("")),
        channel_id: channel.to_owned(),
        user_id: user.to_owned(),
        user_name: field("user_name").map(str::to_owned),
        ts: None,
        thread_ts: None,
        direct: channel.starts_with('D') || field("channel_name") == Some("directmessage"),
        kind: IncomingKind::SlashCommand {
            command: command.to_owned(),
            response_url: field("response_url").unwrap_or("").to_owned(),
        },
    })
}

/// A slash command as Slack POSTs it (`application/x-www-form-urlencoded`).
pub fn parse_slash_command_form(body: &[u8]) -> Result<Incoming, PayloadError> {
    let fields = parse_form(body)?;
    let object: serde_json::Map<String, Value> = fields
        .into_iter()
        .map(|(k, v)| (k, Value::String(v)))
        .collect();
    slash_command_json(&Value::Object(object))
}

/// Decodes an `application/x-www-form-urlencoded` body (`+` is a space, `%XX` a byte).
/// Later duplicates of a key are kept as well, in order.
pub fn parse_form(body: &[u8]) -> Result<Vec<(String, String)>, PayloadError> {
    let text =
        std::str::from_utf8(body).map_err(|_| PayloadError("form is not UTF-8".to_owned()))?;
    text.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            Ok((percent_decode(key)?, percent_decode(value)?))
        })
        .collect()
}

fn percent_decode(text: &str) -> Result<String, PayloadError> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| PayloadError(format!("bad percent escape in {text:?}")))?;
                out.push(hex);
                i += 2;
            }
            other => out.push(other),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| PayloadError("form value is not UTF-8".to_owned()))
}

/// Remembers what was handled recently, to handle a redelivery (same `event_id`) or the
/// same message seen twice (as `message` and as `app_mention`) once.
pub(crate) struct Seen {
    inner: Mutex<(HashSet<String>, VecDeque<String>)>,
    capacity: usize,
}

impl Seen {
    pub(crate) fn new(capacity: usize) -> Arc<Seen> {
        Arc::new(Seen {
            inner: Mutex::new((HashSet::new(), VecDeque::new())),
            capacity: capacity.max(1),
        })
    }

    /// `true` the first time `key` is offered (and remembers it).
    pub(crate) fn first_time(&self, key: &str) -> bool {
        let mut guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let (set, order) = &mut *guard;
        if set.contains(key) {
            return false;
        }
        if order.len() >= self.capacity
            && let Some(oldest) = order.pop_front()
        {
            set.remove(&oldest);
        }
        set.insert(key.to_owned());
        order.push_back(key.to_owned());
        true
    }

    /// `true` when the line has not been handled yet, by event id and by message.
    pub(crate) fn first_delivery(&self, event_id: Option<&str>, incoming: &Incoming) -> bool {
        if let Some(id) = event_id
            && !self.first_time(&format!("event:{id}"))
        {
            return false;
        }
        match &incoming.ts {
            Some(ts) => self.first_time(&format!("message:{}:{ts}", incoming.channel_id)),
            None => true,
        }
    }
}

/// How many recent events and messages are remembered for de-duplication.
pub(crate) const SEEN_CAPACITY: usize = 20_000;

/// Gives the line to the handler in a task of its own.
pub(crate) fn dispatch(handler: &Arc<dyn Handler>, incoming: Incoming) {
    let handler = Arc::clone(handler);
    tracing::debug!(
        channel = %incoming.channel_id,
        user = %incoming.user_id,
        kind = ?incoming.kind,
        "chat line for the handler"
    );
    tokio::spawn(async move { handler.handle(incoming).await });
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn line(payload: Payload) -> Incoming {
        match payload {
            Payload::Line { incoming, .. } => incoming,
            other => panic!("expected a line, got {other:?}"),
        }
    }

    fn message(event: Value) -> Value {
        json!({"type": "event_callback", "event_id": "Ev1", "event": event})
    }

    #[test]
    fn a_channel_message_is_a_line_with_its_thread() {
        let body = message(json!({
            "type": "message", "channel": "C1", "user": "U1", "text": "chima deploy web",
            "ts": "1.2", "channel_type": "channel"
        }));
        let got = parse_value(&body, Some("U0BOT")).expect("parse");
        assert_eq!(
            got,
            Payload::Line {
                incoming: Incoming {
                    text: "chima deploy web".to_owned(),
                    channel_id: "C1".to_owned(),
                    user_id: "U1".to_owned(),
                    user_name: None,
                    ts: Some("1.2".to_owned()),
                    thread_ts: Some("1.2".to_owned()),
                    direct: false,
                    kind: IncomingKind::Message,
                },
                event_id: Some("Ev1".to_owned()),
            }
        );
        // A reply in a thread answers in that thread.
        let body = message(json!({
            "type": "message", "channel": "D1", "user": "U1", "text": "deploy web",
            "ts": "5.6", "thread_ts": "3.4", "channel_type": "im"
        }));
        let got = line(parse_value(&body, None).expect("parse"));
        assert_eq!(got.thread_ts.as_deref(), Some("3.4"));
        assert!(got.direct);
    }

    #[test]
    fn bots_edits_and_other_events_are_ignored() {
        for event in [
            json!({"type": "message", "subtype": "bot_message", "bot_id": "B1", "channel": "C1", "text": "x", "ts": "1"}),
            json!({"type": "message", "bot_id": "B1", "user": "U9", "channel": "C1", "text": "x", "ts": "1"}),
            json!({"type": "message", "user": "U0BOT", "channel": "C1", "text": "x", "ts": "1"}),
            json!({"type": "message", "subtype": "message_changed", "channel": "C1", "hidden": true, "ts": "1"}),
            json!({"type": "message", "subtype": "channel_join", "user": "U1", "channel": "C1", "text": "joined", "ts": "1"}),
            json!({"type": "message", "user": "U1", "channel": "C1", "text": "  ", "ts": "1"}),
            json!({"type": "reaction_added", "user": "U1", "reaction": "tada"}),
            json!({"type": "user_change", "user": {"id": "U1"}}),
        ] {
            let got = parse_value(&message(event.clone()), Some("U0BOT")).expect("parse");
            assert!(
                matches!(got, Payload::Ignored { ref event_id, .. } if event_id.as_deref() == Some("Ev1")),
                "{event}: {got:?}"
            );
        }
        // A thread broadcast is still a person writing.
        let got = parse_value(
            &message(
                json!({"type": "message", "subtype": "thread_broadcast", "user": "U1",
                "channel": "C1", "text": "chima help", "ts": "2", "thread_ts": "1"}),
            ),
            Some("U0BOT"),
        )
        .expect("parse");
        assert_eq!(line(got).thread_ts.as_deref(), Some("1"));
    }

    #[test]
    fn malformed_payloads_are_errors() {
        for bad in [
            &b"not json"[..],
            b"[]",
            b"{}",
            b"{\"type\": \"event_callback\"}",
            b"{\"type\": \"url_verification\"}",
            b"{\"type\": \"events_api\"}",
            b"{\"type\": \"event_callback\", \"event\": {\"text\": \"x\"}}",
        ] {
            assert!(
                parse_payload(bad, None).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn slash_command_forms_decode() {
        let got = parse_slash_command_form(
            b"token=t&team_id=T1&channel_id=C1&channel_name=ops&user_id=U1&user_name=alice\
              &command=%2Fdeploy&text=web%2Ffeature+to+prod&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2F1&trigger_id=1.2",
        )
        .expect("parse");
        assert_eq!(got.text, "web/feature to prod");
        assert_eq!(got.user_name.as_deref(), Some("alice"));
        assert_eq!(
            got.kind,
            IncomingKind::SlashCommand {
                command: "/deploy".to_owned(),
                response_url: "https://hooks.slack.com/commands/1".to_owned()
            }
        );
        assert!(!got.direct);
        assert!(parse_slash_command_form(b"text=x").is_err());
        assert!(parse_slash_command_form(b"command=%2&channel_id=C&user_id=U").is_err());
        assert!(parse_form(b"a=%+1").is_err());
        assert_eq!(
            parse_form(b"a=1&b=&c&a=%C3%A9").expect("form"),
            vec![
                ("a".to_owned(), "1".to_owned()),
                ("b".to_owned(), String::new()),
                ("c".to_owned(), String::new()),
                ("a".to_owned(), "é".to_owned()),
            ]
        );
    }

    #[test]
    fn text_arrives_decoded_from_events_and_slash_commands() {
        // What Slack sends for `chima deploy app to prod/web1.example.com` and a lock
        // reason with `&` (https://api.slack.com/reference/surfaces/formatting).
        let body = message(json!({
            "type": "message", "channel": "C1", "user": "U1", "ts": "1.2",
            "text": "chima deploy app to prod/<http://web1.example.com|web1.example.com>"
        }));
        let got = line(parse_value(&body, None).expect("parse"));
        assert_eq!(got.text, "chima deploy app to prod/web1.example.com");
        let body = message(json!({
            "type": "app_mention", "channel": "C1", "user": "U1", "ts": "1.3",
            "text": "<@U0BOT> lock app in prod db &amp; cache"
        }));
        let got = line(parse_value(&body, None).expect("parse"));
        assert_eq!(got.text, "<@U0BOT> lock app in prod db & cache");
        let got = parse_slash_command_form(
            b"channel_id=C1&user_id=U1&command=%2Fdeploy\
              &text=app+to+staging%2F%3Chttp%3A%2F%2Fweb1.example.com%7Cweb1.example.com%3E+%26amp%3B",
        )
        .expect("parse");
        assert_eq!(got.text, "app to staging/web1.example.com &");
        let got = line(
            parse_value(
                &json!({"type": "slash_commands", "payload": {
                    "command": "/deploy", "channel_id": "C1", "user_id": "U1",
                    "text": "lock app in prod a &lt;b&gt;"}}),
                None,
            )
            .expect("parse"),
        );
        assert_eq!(got.text, "lock app in prod a <b>");
    }

    #[test]
    fn seen_remembers_within_its_capacity() {
        let seen = Seen::new(2);
        assert!(seen.first_time("a"));
        assert!(!seen.first_time("a"));
        assert!(seen.first_time("b"));
        assert!(seen.first_time("c"));
        assert!(seen.first_time("a"), "a was forgotten to make room");
        let incoming = Incoming {
            text: "x".to_owned(),
            channel_id: "C1".to_owned(),
            user_id: "U1".to_owned(),
            user_name: None,
            ts: Some("1.2".to_owned()),
            thread_ts: None,
            direct: false,
            kind: IncomingKind::Message,
        };
        let seen = Seen::new(100);
        assert!(seen.first_delivery(Some("Ev1"), &incoming));
        assert!(!seen.first_delivery(Some("Ev1"), &incoming), "redelivery");
        assert!(
            !seen.first_delivery(Some("Ev2"), &incoming),
            "the same message as an app_mention"
        );
    }
}
