//! A fake Slack: the Web API methods chima and faseng call, and a Socket Mode
//! WebSocket, on 127.0.0.1.
//!
//! Shapes follow Slack's documentation (`{"ok": true, ...}` answers,
//! `{"ok": false, "error": "<code>"}` refusals with HTTP 200, 429 with `Retry-After`,
//! Socket Mode's `hello` / `disconnect` frames and envelopes acknowledged by
//! `{"envelope_id": ...}`). It records every call (method, body, `Authorization`) and
//! every acknowledgement, so tests can assert what the real client sent, and it can be
//! told to fail the next calls to a method (429, 5xx, or an error code).
//!
//! It is as strict as Slack where chima and faseng could get Slack wrong:
//!
//! * text reaches the app as Slack encodes it ([`encode`]: entities, links, mentions),
//!   in events and slash commands alike;
//! * `chat.postMessage` refuses channels the bot is not in (`not_in_channel`) and ids it
//!   does not know (`channel_not_found`);
//! * posts and edits over Slack's size limits are refused with Slack's codes
//!   (`msg_too_long`, `invalid_blocks`);
//! * slash commands made with [`FakeSlack::slash_command`] carry a `response_url` of the
//!   fake (`/response/<n>`), which takes 5 posts within 30 minutes in any channel and
//!   answers 404 `used_url` / `expired_url` after that
//!   (https://api.slack.com/interactivity/handling#message_responses); a DM or private
//!   channel the bot is not in is [`FakeSlack::set_channel_without_bot`].
//!
//! ```no_run
//! # async fn demo() {
//! use chima_testkit::slack::{self, FakeSlack};
//! let fake = FakeSlack::start().await;
//! // SLACK_API_URL = fake.url, SLACK_BOT_TOKEN = slack::BOT_TOKEN, SLACK_APP_TOKEN = slack::APP_TOKEN
//! fake.push_event(slack::events_api_message("chima deploy web", "C1", "U1", "1.2", "Ev1", 0));
//! # }
//! ```

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::ws::{Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, RawQuery, State};
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Map, Value, json};
use sha2::Sha256;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// The bot token the fake accepts (`Authorization: Bearer ...`).
pub const BOT_TOKEN: &str = "xoxb-1111111111-2222222222-testkitBotToken0123456789";
/// The app-level token the fake accepts for `apps.connections.open`.
pub const APP_TOKEN: &str = "xapp-1-A0TESTKIT-3333333333-testkitAppToken0123456789abcdef";
/// The bot's user id (`auth.test`).
pub const BOT_USER_ID: &str = "U0CHIMA";
/// The bot's user name (`auth.test`).
pub const BOT_NAME: &str = "chima";
/// The bot id its own messages carry.
pub const BOT_ID: &str = "B0CHIMA";
pub const TEAM_ID: &str = "T0TESTKIT";
pub const APP_ID: &str = "A0TESTKIT";

/// How the fake answers the next calls to a method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// HTTP 429 with `Retry-After: <secs>` and `{"ok": false, "error": "ratelimited"}`.
    RateLimited { retry_after_secs: u64 },
    /// This HTTP status (500, 502, 503...) with an HTML body, as a proxy would send.
    Status(u16),
    /// HTTP 200 with `{"ok": false, "error": <code>}`.
    Error(String),
}

/// One Web API call the fake received.
#[derive(Debug, Clone)]
pub struct ApiCall {
    /// `chat.postMessage`, `auth.test`...
    pub method: String,
    /// `GET` or `POST`.
    pub http_method: String,
    /// The `Authorization` header, if any.
    pub authorization: Option<String>,
    pub content_type: Option<String>,
    /// The arguments as one JSON object: the JSON body, or the form body, plus the
    /// query string.
    pub args: Value,
    /// When the fake received it.
    pub at: Instant,
}

impl ApiCall {
    /// An argument as text.
    pub fn arg(&self, name: &str) -> Option<&str> {
        self.args.get(name).and_then(Value::as_str)
    }
}

/// A message posted with `chat.postMessage`.
#[derive(Debug, Clone, PartialEq)]
pub struct PostedMessage {
    pub channel: String,
    pub thread_ts: Option<String>,
    pub text: Option<String>,
    pub blocks: Option<Value>,
    /// The ts the fake gave it.
    pub ts: String,
}

/// An edit with `chat.update`.
#[derive(Debug, Clone, PartialEq)]
pub struct UpdatedMessage {
    pub channel: String,
    pub ts: String,
    pub text: Option<String>,
    pub blocks: Option<Value>,
}

enum Outbound {
    Text(String),
    /// Close the TCP connection without a WebSocket close frame.
    Drop,
}

struct Connection {
    tx: mpsc::UnboundedSender<Outbound>,
    /// Still the one envelopes go to (not told to disconnect, not dropped, not closed).
    live: bool,
}

struct State_ {
    url: String,
    /// The bot token's scopes, sent in `x-oauth-scopes`.
    scopes: Vec<String>,
    calls: Vec<ApiCall>,
    posted: Vec<PostedMessage>,
    updated: Vec<UpdatedMessage>,
    failures: HashMap<String, VecDeque<Failure>>,
    channel_failures: HashMap<String, Failure>,
    channels: HashMap<String, String>,
    /// The channels (ids) the bot is a member of.
    members: HashSet<String>,
    users: HashMap<String, String>,
    connections: Vec<Connection>,
    accepted: usize,
    /// Envelopes pushed while no connection was live: sent to the next one.
    pending: VecDeque<String>,
    acks: Vec<Value>,
    sent_frames: Vec<Value>,
    next_ts: u64,
    /// The response URLs handed out in slash commands, `/response/<n>` being `[n - 1]`.
    response_urls: Vec<ResponseUrl>,
    /// How long a response URL works (Slack: 30 minutes).
    response_lifetime: Duration,
    responded: Vec<Responded>,
}

/// A slash command's response URL: the channel it answers in, when it was made and how
/// often it was used.
struct ResponseUrl {
    channel: String,
    made: Instant,
    uses: u32,
}

/// Slack takes 5 posts to one response URL within 30 minutes
/// (https://api.slack.com/interactivity/handling#message_responses).
pub const RESPONSE_URL_USES: u32 = 5;
/// See [`RESPONSE_URL_USES`].
pub const RESPONSE_URL_LIFETIME: Duration = Duration::from_secs(30 * 60);

/// A message posted to a slash command's response URL and accepted.
#[derive(Debug, Clone, PartialEq)]
pub struct Responded {
    /// `n` of `/response/<n>`.
    pub url: usize,
    /// The channel of the command (where Slack shows the message).
    pub channel: String,
    pub text: Option<String>,
    pub blocks: Option<Value>,
    /// `in_channel` or `ephemeral` (Slack's default when absent).
    pub response_type: Option<String>,
    pub replace_original: bool,
}

type Shared = Arc<Mutex<State_>>;

fn lock(state: &Shared) -> MutexGuard<'_, State_> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

/// A running fake Slack. It stops when dropped.
pub struct FakeSlack {
    /// `http://127.0.0.1:PORT/api`: use as `SLACK_API_URL`.
    pub url: String,
    state: Shared,
    task: JoinHandle<()>,
}

impl FakeSlack {
    /// Starts the fake on a random port of 127.0.0.1, with channel `C0DEPLOYS` named
    /// `deploys` (the bot is a member) and user `U0ALICE` named `alice`.
    ///
    /// # Panics
    /// When no port can be bound: the test cannot run anyway.
    pub async fn start() -> FakeSlack {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0 for the fake Slack");
        let addr = listener.local_addr().expect("local address of the fake");
        let base = format!("http://{addr}");
        let state: Shared = Arc::new(Mutex::new(State_ {
            url: base.clone(),
            scopes: chima_slack::manifest::bot_scopes()
                .into_iter()
                .map(str::to_owned)
                .collect(),
            calls: Vec::new(),
            posted: Vec::new(),
            updated: Vec::new(),
            failures: HashMap::new(),
            channel_failures: HashMap::new(),
            channels: HashMap::from([("C0DEPLOYS".to_owned(), "deploys".to_owned())]),
            members: HashSet::from(["C0DEPLOYS".to_owned()]),
            users: HashMap::from([("U0ALICE".to_owned(), "alice".to_owned())]),
            connections: Vec::new(),
            accepted: 0,
            pending: VecDeque::new(),
            acks: Vec::new(),
            sent_frames: Vec::new(),
            next_ts: 0,
            response_urls: Vec::new(),
            response_lifetime: RESPONSE_URL_LIFETIME,
            responded: Vec::new(),
        }));
        let app = Router::new()
            .route("/api/{method}", any(api))
            .route("/response/{n}", any(respond))
            .route("/socket", get(socket))
            .with_state(state.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeSlack {
            url: format!("{base}/api"),
            state,
            task,
        }
    }

    /// The scopes the bot token was granted (default: the manifest's,
    /// `chima_slack::manifest::bot_scopes`), sent in the `x-oauth-scopes` header of
    /// every Web API response to a bot-token call, as Slack does for the token a call
    /// is made with (https://api.slack.com/authentication/oauth-v2#asking).
    pub fn set_scopes(&self, scopes: &[&str]) {
        lock(&self.state).scopes = scopes.iter().map(|s| (*s).to_owned()).collect();
    }

    /// The next `times` calls to `method` fail this way (after earlier failures queued
    /// for it). `u32::MAX` times: until [`FakeSlack::clear_failures`].
    pub fn fail_next(&self, method: &str, times: u32, failure: Failure) {
        let mut st = lock(&self.state);
        let queue = st.failures.entry(method.to_owned()).or_default();
        let times = if times == u32::MAX { 1_000_000 } else { times };
        for _ in 0..times {
            queue.push_back(failure.clone());
        }
    }

    /// Every call naming this channel fails this way (an outage or a missing channel
    /// that hits one deployment and not the others), until
    /// [`FakeSlack::clear_failures`].
    pub fn fail_channel(&self, channel: &str, failure: Failure) {
        lock(&self.state)
            .channel_failures
            .insert(channel.to_owned(), failure);
    }

    /// Every method and channel answers normally again.
    pub fn clear_failures(&self) {
        let mut st = lock(&self.state);
        st.failures.clear();
        st.channel_failures.clear();
    }

    /// Names a channel (`conversations.info`) and adds the bot to it: the bot may post
    /// there.
    pub fn set_channel(&self, id: &str, name: &str) {
        let mut st = lock(&self.state);
        st.channels.insert(id.to_owned(), name.to_owned());
        st.members.insert(id.to_owned());
    }

    /// Names a channel the bot is not a member of (a private channel it was not invited
    /// to, a DM between people): `chat.postMessage` there answers `not_in_channel`
    /// (https://api.slack.com/methods/chat.postMessage#errors), although slash commands
    /// can be typed there.
    pub fn set_channel_without_bot(&self, id: &str, name: &str) {
        let mut st = lock(&self.state);
        st.channels.insert(id.to_owned(), name.to_owned());
        st.members.remove(id);
    }

    /// A new response URL for a slash command typed in `channel`:
    /// `<fake>/response/<n>`, taking [`RESPONSE_URL_USES`] posts within the lifetime
    /// (see [`FakeSlack::set_response_url_lifetime`]).
    pub fn response_url_for(&self, channel: &str) -> String {
        let mut st = lock(&self.state);
        st.response_urls.push(ResponseUrl {
            channel: channel.to_owned(),
            made: Instant::now(),
            uses: 0,
        });
        format!("{}/response/{}", st.url, st.response_urls.len())
    }

    /// How long response URLs work from when they are made (default 30 minutes, as
    /// Slack's).
    pub fn set_response_url_lifetime(&self, lifetime: Duration) {
        lock(&self.state).response_lifetime = lifetime;
    }

    /// The fields of a slash command typed in `channel`, with a response URL of this
    /// fake ([`FakeSlack::response_url_for`]).
    pub fn slash_command_fields(
        &self,
        command: &str,
        text: &str,
        channel: &str,
        user: &str,
    ) -> Vec<(String, String)> {
        let url = self.response_url_for(channel);
        let mut fields = slash_command_fields(command, text, channel, user);
        for (k, v) in &mut fields {
            if k == "response_url" {
                v.clone_from(&url);
            }
        }
        fields
    }

    /// A Socket Mode `slash_commands` envelope with a response URL of this fake.
    pub fn slash_command(&self, command: &str, text: &str, channel: &str, user: &str) -> Value {
        let payload: Map<String, Value> = self
            .slash_command_fields(command, text, channel, user)
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

    /// The form body of a slash command with a response URL of this fake.
    pub fn slash_command_form(
        &self,
        command: &str,
        text: &str,
        channel: &str,
        user: &str,
    ) -> String {
        let fields = self.slash_command_fields(command, text, channel, user);
        let pairs: Vec<(&str, &str)> = fields
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        form_encode(&pairs)
    }

    /// Uses up response URL `n` (`/response/<n>`) as if it had taken its 5 posts:
    /// Slack answers `used_url` from then on.
    pub fn spend_response_url(&self, n: usize) {
        if let Some(url) = lock(&self.state).response_urls.get_mut(n.wrapping_sub(1)) {
            url.uses = RESPONSE_URL_USES;
        }
    }

    /// The messages accepted at response URLs, in order.
    pub fn responded(&self) -> Vec<Responded> {
        lock(&self.state).responded.clone()
    }

    /// `line` as Slack's clients send it when typed here, with this fake's users and
    /// channels: see [`encode`].
    pub fn encode(&self, line: &str) -> String {
        let st = lock(&self.state);
        encode_with(line, &directory(&st.users, &st.channels))
    }

    /// A Socket Mode `events_api` envelope of a channel message typed as `line`, encoded
    /// with this fake's users and channels (see [`FakeSlack::encode`]).
    pub fn typed_message(
        &self,
        line: &str,
        channel: &str,
        user: &str,
        ts: &str,
        event_id: &str,
    ) -> Value {
        events_api_envelope(
            event_callback_raw(&self.encode(line), channel, user, ts, event_id),
            0,
        )
    }

    /// Names a user (`users.info`).
    pub fn set_user(&self, id: &str, name: &str) {
        lock(&self.state)
            .users
            .insert(id.to_owned(), name.to_owned());
    }

    /// Every Web API call so far, in order.
    pub fn all_calls(&self) -> Vec<ApiCall> {
        lock(&self.state).calls.clone()
    }

    /// The calls to one method, in order.
    pub fn calls(&self, method: &str) -> Vec<ApiCall> {
        lock(&self.state)
            .calls
            .iter()
            .filter(|c| c.method == method)
            .cloned()
            .collect()
    }

    /// Messages posted (and accepted), in order.
    pub fn posted(&self) -> Vec<PostedMessage> {
        lock(&self.state).posted.clone()
    }

    /// Edits made (and accepted), in order.
    pub fn updated(&self) -> Vec<UpdatedMessage> {
        lock(&self.state).updated.clone()
    }

    /// Sends a Socket Mode envelope to the current connection, or to the next one when
    /// none is open (as Slack keeps events for a reconnecting app).
    pub fn push_event(&self, envelope: Value) {
        let text = envelope.to_string();
        let mut st = lock(&self.state);
        st.sent_frames.push(envelope);
        let live = st
            .connections
            .iter()
            .rev()
            .find(|c| c.live)
            .map(|c| c.tx.clone());
        match live {
            Some(tx) if tx.send(Outbound::Text(text.clone())).is_ok() => {}
            _ => st.pending.push_back(text),
        }
    }

    /// Sends a `disconnect` frame (reason `warning`, `refresh_requested`,
    /// `link_disabled`...) to the current connection. Envelopes pushed afterwards go to
    /// the next connection.
    pub fn disconnect(&self, reason: &str) {
        let frame = json!({
            "type": "disconnect",
            "reason": reason,
            "debug_info": {"host": "applink-testkit"},
        });
        let mut st = lock(&self.state);
        st.sent_frames.push(frame.clone());
        if let Some(conn) = st.connections.iter_mut().rev().find(|c| c.live) {
            let _ = conn.tx.send(Outbound::Text(frame.to_string()));
            conn.live = false;
        }
    }

    /// Closes the current connection's TCP stream without a WebSocket close frame, as a
    /// network failure would.
    pub fn drop_connection(&self) {
        let mut st = lock(&self.state);
        if let Some(conn) = st.connections.iter_mut().rev().find(|c| c.live) {
            let _ = conn.tx.send(Outbound::Drop);
            conn.live = false;
        }
    }

    /// How many Socket Mode connections were accepted so far.
    pub fn connections(&self) -> usize {
        lock(&self.state).accepted
    }

    /// How many Socket Mode connections are open and receiving envelopes.
    pub fn live_connections(&self) -> usize {
        lock(&self.state)
            .connections
            .iter()
            .filter(|c| c.live && !c.tx.is_closed())
            .count()
    }

    /// The `envelope_id` of every acknowledgement received, in order.
    pub fn acks(&self) -> Vec<String> {
        lock(&self.state)
            .acks
            .iter()
            .filter_map(|a| a.get("envelope_id").and_then(Value::as_str))
            .map(str::to_owned)
            .collect()
    }

    /// Every acknowledgement frame received (with its `payload`, for slash commands).
    pub fn ack_frames(&self) -> Vec<Value> {
        lock(&self.state).acks.clone()
    }

    /// Every frame pushed to the app (envelopes and `disconnect`s; not `hello`s).
    pub fn sent_frames(&self) -> Vec<Value> {
        lock(&self.state).sent_frames.clone()
    }

    /// Waits until `check` holds, or panics after `limit` naming `what`. Polls; a slow
    /// machine only makes it slower.
    pub async fn wait_for(&self, what: &str, limit: Duration, check: impl Fn(&FakeSlack) -> bool) {
        let deadline = tokio::time::Instant::now() + limit;
        while !check(self) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out after {limit:?} waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for FakeSlack {
    fn drop(&mut self) {
        let mut st = lock(&self.state);
        for conn in &st.connections {
            let _ = conn.tx.send(Outbound::Drop);
        }
        st.connections.clear();
        drop(st);
        self.task.abort();
    }
}

// ---- Web API ------------------------------------------------------------------------

async fn api(
    State(state): State<Shared>,
    Path(method): Path<String>,
    http_method: Method,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let bot = header_text(&headers, header::AUTHORIZATION.as_str())
        .is_some_and(|a| a == format!("Bearer {BOT_TOKEN}"));
    let mut resp = api_answer(
        State(state.clone()),
        Path(method),
        http_method,
        RawQuery(query),
        headers,
        body,
    )
    .await;
    if bot {
        let scopes = lock(&state).scopes.join(",");
        if let Ok(v) = HeaderValue::from_str(&scopes) {
            resp.headers_mut().insert("x-oauth-scopes", v);
        }
    }
    resp
}

async fn api_answer(
    State(state): State<Shared>,
    Path(method): Path<String>,
    http_method: Method,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let content_type = header_text(&headers, header::CONTENT_TYPE.as_str());
    let mut args = Map::new();
    if let Some(query) = &query {
        for (k, v) in form_pairs(query) {
            args.insert(k, Value::String(v));
        }
    }
    let is_json = content_type
        .as_deref()
        .is_some_and(|c| c.starts_with("application/json"));
    if is_json {
        match serde_json::from_slice::<Value>(&body) {
            Ok(Value::Object(object)) => args.extend(object),
            _ => return ok_false("invalid_json"),
        }
    } else if !body.is_empty() {
        for (k, v) in form_pairs(&String::from_utf8_lossy(&body)) {
            args.insert(k, Value::String(v));
        }
    }
    let authorization = header_text(&headers, header::AUTHORIZATION.as_str());
    let call = ApiCall {
        method: method.clone(),
        http_method: http_method.to_string(),
        authorization: authorization.clone(),
        content_type,
        args: Value::Object(args.clone()),
        at: Instant::now(),
    };
    let mut st = lock(&state);
    st.calls.push(call);

    if let Some(failure) = st.failures.get_mut(&method).and_then(VecDeque::pop_front) {
        return failed(failure);
    }
    let channel_failure = args
        .get("channel")
        .and_then(Value::as_str)
        .and_then(|c| st.channel_failures.get(c))
        .cloned();
    if let Some(failure) = channel_failure {
        return failed(failure);
    }
    let token = authorization
        .as_deref()
        .and_then(|a| a.strip_prefix("Bearer "))
        .map(str::to_owned)
        .or_else(|| args.get("token").and_then(Value::as_str).map(str::to_owned));
    let expected = if method == "apps.connections.open" {
        APP_TOKEN
    } else {
        BOT_TOKEN
    };
    match token.as_deref() {
        None => return ok_false("not_authed"),
        Some(t) if t == expected => {}
        Some(t) if t == BOT_TOKEN || t == APP_TOKEN => return ok_false("not_allowed_token_type"),
        Some(_) => return ok_false("invalid_auth"),
    }
    let arg = |name: &str| -> Option<String> {
        match args.get(name) {
            Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        }
    };
    match method.as_str() {
        "auth.test" => ok(json!({
            "url": "https://testkit.slack.com/",
            "team": "Testkit",
            "user": BOT_NAME,
            "team_id": TEAM_ID,
            "user_id": BOT_USER_ID,
            "bot_id": BOT_ID,
            "is_enterprise_install": false,
        })),
        "apps.connections.open" => {
            let ticket = st.accepted + 1;
            ok(
                json!({"url": format!("{}/socket?ticket={ticket}&app_id={APP_ID}", st.url.replacen("http://", "ws://", 1))}),
            )
        }
        "chat.postMessage" => {
            let Some(channel) = arg("channel") else {
                return ok_false("channel_not_found");
            };
            let text = arg("text");
            let blocks = blocks_arg(args.get("blocks"));
            if text.is_none() && blocks.is_none() {
                return ok_false("no_text");
            }
            let channel = resolve_channel(&st, &channel);
            if let Some(refusal) = refuse_channel(&st, &channel) {
                return ok_false(refusal);
            }
            if let Some(refusal) = refuse_size(text.as_deref(), blocks.as_ref()) {
                return refusal;
            }
            st.next_ts += 1;
            let ts = format!("{}.{:06}", 1_700_000_000 + st.next_ts, st.next_ts * 100);
            let thread_ts = arg("thread_ts");
            st.posted.push(PostedMessage {
                channel: channel.clone(),
                thread_ts: thread_ts.clone(),
                text: text.clone(),
                blocks: blocks.clone(),
                ts: ts.clone(),
            });
            let mut message = json!({
                "type": "message",
                "subtype": "bot_message",
                "text": text.unwrap_or_default(),
                "user": BOT_USER_ID,
                "bot_id": BOT_ID,
                "ts": ts,
                "team": TEAM_ID,
            });
            if let Some(thread_ts) = thread_ts {
                message["thread_ts"] = Value::String(thread_ts);
            }
            ok(json!({"channel": channel, "ts": ts, "message": message}))
        }
        "chat.update" => {
            let (Some(channel), Some(ts)) = (arg("channel"), arg("ts")) else {
                return ok_false("message_not_found");
            };
            if !st.posted.iter().any(|p| p.channel == channel && p.ts == ts) {
                return ok_false("message_not_found");
            }
            let text = arg("text");
            let blocks = blocks_arg(args.get("blocks"));
            if let Some(refusal) = refuse_size(text.as_deref(), blocks.as_ref()) {
                return refusal;
            }
            st.updated.push(UpdatedMessage {
                channel: channel.clone(),
                ts: ts.clone(),
                text: text.clone(),
                blocks,
            });
            ok(json!({
                "channel": channel,
                "ts": ts,
                "text": text.clone().unwrap_or_default(),
                "message": {"text": text.unwrap_or_default(), "user": BOT_USER_ID, "bot_id": BOT_ID},
            }))
        }
        "conversations.info" => {
            let id = arg("channel").unwrap_or_default();
            match st.channels.get(&id) {
                Some(name) => ok(json!({"channel": {
                    "id": id, "name": name, "is_channel": true, "is_private": false,
                    "is_archived": false, "is_member": st.members.contains(&id),
                    "created": 1_700_000_000,
                }})),
                None if id.starts_with('D') => ok(
                    json!({"channel": {"id": id, "is_im": true, "user": "U0ALICE", "created": 1_700_000_000}}),
                ),
                None => ok_false("channel_not_found"),
            }
        }
        "users.info" => {
            let id = arg("user").unwrap_or_default();
            match st.users.get(&id) {
                Some(name) => ok(json!({"user": {
                    "id": id, "team_id": TEAM_ID, "name": name, "real_name": name,
                    "deleted": false, "is_bot": false,
                    "profile": {"display_name": name, "real_name": name},
                }})),
                None => ok_false("user_not_found"),
            }
        }
        // https://api.slack.com/methods/users.list: cursor-paged (`limit`, at most 1000,
        // `response_metadata.next_cursor` empty on the last page); the bot itself is a
        // member too. chima reads it once to turn names in app.json into user ids.
        "users.list" => {
            let mut members: Vec<Value> = st
                .users
                .iter()
                .map(|(id, name)| {
                    json!({"id": id, "team_id": TEAM_ID, "name": name, "real_name": name,
                           "deleted": false, "is_bot": false,
                           "profile": {"display_name": name, "real_name": name}})
                })
                .collect();
            members.push(
                json!({"id": BOT_USER_ID, "team_id": TEAM_ID, "name": BOT_NAME,
                                "deleted": false, "is_bot": true}),
            );
            members.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
            let (page, next) = page_of(members, arg("cursor"), arg("limit"));
            ok(json!({"members": page, "response_metadata": {"next_cursor": next}}))
        }
        // https://api.slack.com/methods/conversations.list: the same paging; `types`
        // defaults to public channels.
        "conversations.list" => {
            let mut channels: Vec<Value> = st
                .channels
                .iter()
                .map(|(id, name)| {
                    json!({"id": id, "name": name, "is_channel": true, "is_private": false,
                           "is_archived": false, "is_member": st.members.contains(id)})
                })
                .collect();
            channels.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
            let (page, next) = page_of(channels, arg("cursor"), arg("limit"));
            ok(json!({"channels": page, "response_metadata": {"next_cursor": next}}))
        }
        _ => ok_false("unknown_method"),
    }
}

/// One page of a cursor-paged list: the cursor is the offset (opaque to clients), the
/// limit defaults to 100 and is capped at 1000 as Slack's list methods do.
fn page_of(all: Vec<Value>, cursor: Option<String>, limit: Option<String>) -> (Vec<Value>, String) {
    let start: usize = cursor.and_then(|c| c.parse().ok()).unwrap_or(0);
    let limit: usize = limit
        .and_then(|l| l.parse().ok())
        .filter(|l| *l > 0)
        .unwrap_or(100)
        .min(1000);
    let end = (start + limit).min(all.len());
    let next = if end < all.len() {
        end.to_string()
    } else {
        String::new()
    };
    (
        all.into_iter()
            .skip(start)
            .take(end.saturating_sub(start))
            .collect(),
        next,
    )
}

// ---- response URLs ------------------------------------------------------------------

/// `POST /response/<n>`: a slash command's response URL, as Slack serves it
/// (https://api.slack.com/interactivity/handling#message_responses): a JSON body with
/// `text` (and/or `blocks`), `response_type` (`in_channel` shows it to the channel,
/// `ephemeral` only to the user) and `replace_original`; up to 5 posts within 30
/// minutes, answered `200 ok` as text; past that HTTP 404 with `used_url` or
/// `expired_url` as text. Posts work in any channel, the bot a member or not.
async fn respond(
    State(state): State<Shared>,
    Path(n): Path<String>,
    http_method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let text_answer = |status: StatusCode, text: &'static str| {
        let mut r = (status, text).into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        r
    };
    if http_method != Method::POST {
        return text_answer(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
    }
    let mut st = lock(&state);
    let lifetime = st.response_lifetime;
    let index = n
        .parse::<usize>()
        .ok()
        .filter(|i| *i >= 1 && *i <= st.response_urls.len());
    let Some(index) = index else {
        return text_answer(StatusCode::NOT_FOUND, "invalid_url");
    };
    let url = &st.response_urls[index - 1];
    if url.made.elapsed() > lifetime {
        return text_answer(StatusCode::NOT_FOUND, "expired_url");
    }
    if url.uses >= RESPONSE_URL_USES {
        return text_answer(StatusCode::NOT_FOUND, "used_url");
    }
    let is_json = header_text(&headers, header::CONTENT_TYPE.as_str())
        .is_some_and(|c| c.starts_with("application/json"));
    let Some(Value::Object(args)) = is_json
        .then(|| serde_json::from_slice::<Value>(&body).ok())
        .flatten()
    else {
        return text_answer(StatusCode::BAD_REQUEST, "invalid_payload");
    };
    let text = args
        .get("text")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .map(str::to_owned);
    let blocks = blocks_arg(args.get("blocks"));
    if text.is_none() && blocks.is_none() {
        return text_answer(StatusCode::BAD_REQUEST, "no_text");
    }
    if let Some(refusal) = refuse_size(text.as_deref(), blocks.as_ref()) {
        return refusal;
    }
    let channel = url.channel.clone();
    st.response_urls[index - 1].uses += 1;
    st.responded.push(Responded {
        url: index,
        channel,
        text,
        blocks,
        response_type: args
            .get("response_type")
            .and_then(Value::as_str)
            .map(str::to_owned),
        replace_original: args
            .get("replace_original")
            .and_then(Value::as_bool)
            .unwrap_or(false),
    });
    text_answer(StatusCode::OK, "ok")
}

/// `#deploys` or `deploys` is channel `C0DEPLOYS`; ids are taken as they are.
fn resolve_channel(st: &State_, channel: &str) -> String {
    let name = channel.trim_start_matches('#');
    st.channels
        .iter()
        .find(|(_, n)| n.as_str() == name)
        .map(|(id, _)| id.clone())
        .unwrap_or_else(|| channel.to_owned())
}

/// Why Slack would refuse a post in `channel` (an id), if it would
/// (https://api.slack.com/methods/chat.postMessage#errors): `not_in_channel` in a
/// channel the bot is not a member of, `channel_not_found` for an id Slack does not
/// know. A `D...` id not set up otherwise is a direct message with the bot, where it may
/// always post (https://api.slack.com/methods/chat.postMessage#channels).
fn refuse_channel(st: &State_, channel: &str) -> Option<&'static str> {
    if st.channels.contains_key(channel) {
        return (!st.members.contains(channel)).then_some("not_in_channel");
    }
    if channel.starts_with('D') {
        return None;
    }
    Some("channel_not_found")
}

/// Slack's size limits on `chat.postMessage` and `chat.update`:
/// * `text` over 40,000 characters: `msg_too_long`
///   (https://api.slack.com/methods/chat.postMessage#errors and #truncating);
/// * more than 50 blocks (https://api.slack.com/reference/block-kit/blocks: "up to 50
///   blocks in each message"), a section's text over 3,000 characters
///   (https://api.slack.com/reference/block-kit/blocks#section) or a context element's
///   (https://api.slack.com/reference/block-kit/composition-objects#text): `invalid_blocks`
///   with the reason in `response_metadata.messages`, as Slack answers. Slack also
///   documents `msg_blocks_too_long` for blocks too long as a whole, without a number:
///   tests that need it queue it with [`FakeSlack::fail_next`].
fn refuse_size(text: Option<&str>, blocks: Option<&Value>) -> Option<Response> {
    if text.is_some_and(|t| t.chars().count() > MAX_TEXT_CHARS) {
        return Some(ok_false("msg_too_long"));
    }
    let invalid = |reason: String| {
        Some(json_response(
            StatusCode::OK,
            &json!({"ok": false, "error": "invalid_blocks",
                    "errors": [reason.clone()],
                    "response_metadata": {"messages": [format!("[ERROR] {reason}")]}}),
        ))
    };
    let blocks = match blocks {
        None => return None,
        Some(Value::Array(blocks)) => blocks,
        Some(_) => return Some(ok_false("invalid_blocks_format")),
    };
    if blocks.len() > MAX_BLOCKS {
        return invalid(format!(
            "no more than {MAX_BLOCKS} items allowed [json-pointer:/blocks]"
        ));
    }
    let too_long = |v: &Value| {
        v.as_str()
            .is_some_and(|t| t.chars().count() > MAX_SECTION_CHARS)
    };
    for (i, block) in blocks.iter().enumerate() {
        match block["type"].as_str() {
            Some("section") if too_long(&block["text"]["text"]) => {
                return invalid(format!(
                    "must be less than {} characters [json-pointer:/blocks/{i}/text/text]",
                    MAX_SECTION_CHARS + 1
                ));
            }
            Some("context") => {
                let elements = block["elements"].as_array().map(Vec::as_slice);
                for (j, element) in elements.unwrap_or_default().iter().enumerate() {
                    if too_long(&element["text"]) {
                        return invalid(format!(
                            "must be less than {} characters [json-pointer:/blocks/{i}/elements/{j}/text]",
                            MAX_SECTION_CHARS + 1
                        ));
                    }
                }
            }
            _ => {}
        }
    }
    None
}

/// Slack's limits (see [`refuse_size`]).
pub const MAX_TEXT_CHARS: usize = 40_000;
pub const MAX_BLOCKS: usize = 50;
pub const MAX_SECTION_CHARS: usize = 3000;

/// Blocks arrive as a JSON array (JSON bodies) or as JSON text (form bodies).
fn blocks_arg(value: Option<&Value>) -> Option<Value> {
    match value? {
        Value::String(text) => serde_json::from_str(text).ok(),
        Value::Null => None,
        other => Some(other.clone()),
    }
}

fn ok(mut body: Value) -> Response {
    body["ok"] = Value::Bool(true);
    json_response(StatusCode::OK, &body)
}

fn ok_false(error: &str) -> Response {
    json_response(StatusCode::OK, &json!({"ok": false, "error": error}))
}

fn failed(failure: Failure) -> Response {
    match failure {
        Failure::RateLimited { retry_after_secs } => {
            let mut resp = json_response(
                StatusCode::TOO_MANY_REQUESTS,
                &json!({"ok": false, "error": "ratelimited"}),
            );
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
            resp
        }
        Failure::Status(status) => (
            StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
            [(header::CONTENT_TYPE, "text/html")],
            "<html><body><h1>503 Service Temporarily Unavailable</h1></body></html>",
        )
            .into_response(),
        Failure::Error(code) => ok_false(&code),
    }
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        body.to_string(),
    )
        .into_response()
}

fn header_text(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
}

/// `a=1&b=x+y` as pairs, percent-decoded (lossy: this is a fake).
pub fn form_pairs(text: &str) -> Vec<(String, String)> {
    text.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => match std::str::from_utf8(&bytes[i + 1..bytes.len().min(i + 3)])
                .ok()
                .filter(|h| h.len() == 2 && h.bytes().all(|b| b.is_ascii_hexdigit()))
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                Some(b) => {
                    out.push(b);
                    i += 2;
                }
                None => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Form-encodes pairs (`application/x-www-form-urlencoded`, as Slack posts slash
/// commands).
pub fn form_encode(pairs: &[(&str, &str)]) -> String {
    let encode = |s: &str| {
        let mut out = String::new();
        for b in s.bytes() {
            match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    out.push(char::from(b))
                }
                b' ' => out.push('+'),
                b => out.push_str(&format!("%{b:02X}")),
            }
        }
        out
    };
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

// ---- Socket Mode --------------------------------------------------------------------

async fn socket(State(state): State<Shared>, ws: WebSocketUpgrade) -> Response {
    ws.on_upgrade(move |socket| run_socket(socket, state))
}

async fn run_socket(mut socket: WebSocket, state: Shared) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let index = {
        let mut st = lock(&state);
        st.accepted += 1;
        let hello = json!({
            "type": "hello",
            "num_connections": 1,
            "debug_info": {
                "host": "applink-testkit",
                "build_number": 1,
                "approximate_connection_time": 18060,
            },
            "connection_info": {"app_id": APP_ID},
        });
        let _ = tx.send(Outbound::Text(hello.to_string()));
        // Older connections no longer get envelopes.
        for conn in &mut st.connections {
            conn.live = false;
        }
        while let Some(pending) = st.pending.pop_front() {
            let _ = tx.send(Outbound::Text(pending));
        }
        st.connections.push(Connection { tx, live: true });
        st.connections.len() - 1
    };
    loop {
        tokio::select! {
            out = rx.recv() => match out {
                Some(Outbound::Text(text)) => {
                    if socket.send(WsMessage::Text(text.into())).await.is_err() {
                        break;
                    }
                }
                Some(Outbound::Drop) | None => {
                    // Dropping the socket closes the TCP stream with no close frame.
                    drop(socket);
                    mark_gone(&state, index);
                    return;
                }
            },
            incoming = socket.recv() => match incoming {
                Some(Ok(WsMessage::Text(text))) => {
                    if let Ok(frame) = serde_json::from_str::<Value>(text.as_str()) {
                        lock(&state).acks.push(frame);
                    }
                }
                Some(Ok(WsMessage::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
        }
    }
    mark_gone(&state, index);
}

/// A connection that ended: what was meant for it but not sent is lost, as with Slack
/// (which redelivers unacknowledged envelopes; tests push again if they need to).
fn mark_gone(state: &Shared, index: usize) {
    if let Some(conn) = lock(state).connections.get_mut(index) {
        conn.live = false;
    }
}

// ---- payloads -------------------------------------------------------------------------

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

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
/// https://api.slack.com/interactivity/slash-commands#app_command_handling).
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

// ---- Slack's text format ---------------------------------------------------------------

/// People and channels [`encode`] knows by name: the fake's defaults.
fn default_directory() -> Directory {
    Directory {
        users: vec![
            (BOT_NAME.to_owned(), BOT_USER_ID.to_owned()),
            ("alice".to_owned(), "U0ALICE".to_owned()),
        ],
        channels: vec![("deploys".to_owned(), "C0DEPLOYS".to_owned())],
    }
}

/// Names to ids, for mentions.
struct Directory {
    users: Vec<(String, String)>,
    channels: Vec<(String, String)>,
}

fn directory(users: &HashMap<String, String>, channels: &HashMap<String, String>) -> Directory {
    let mut d = default_directory();
    d.users
        .extend(users.iter().map(|(id, name)| (name.clone(), id.clone())));
    d.channels
        .extend(channels.iter().map(|(id, name)| (name.clone(), id.clone())));
    d
}

/// A line as Slack's clients and servers turn it into a message's `text`
/// (https://api.slack.com/reference/surfaces/formatting), for the fake's default users
/// (the bot `chima`, `alice`) and channel (`deploys`):
///
/// * `&` `<` `>` become `&amp;` `&lt;` `&gt;` (#escaping);
/// * a host name becomes `<http://web1.example.com|web1.example.com>`, a typed URL
///   `<https://x.example/a>`, an e-mail address `<mailto:a@b.example|a@b.example>`
///   (#linking-urls: Slack detects them server-side);
/// * `@chima`, `@alice` become `<@U0CHIMA>`, `<@U0ALICE>` (#mentioning-users),
///   `@here` `<!here>` (#special-mentions), `#deploys` `<#C0DEPLOYS|deploys>`
///   (#linking-channels).
///
/// Use [`FakeSlack::encode`] for the users and channels set up on a fake.
pub fn encode(line: &str) -> String {
    encode_with(line, &default_directory())
}

fn encode_with(line: &str, dir: &Directory) -> String {
    let mut out = String::with_capacity(line.len() + 16);
    let mut word = String::new();
    for c in line.chars() {
        if c.is_whitespace() {
            out.push_str(&encode_word(&word, dir));
            word.clear();
            out.push(c);
        } else {
            word.push(c);
        }
    }
    out.push_str(&encode_word(&word, dir));
    out
}

/// Characters a name can end with before punctuation (`@chima:`, `#deploys,`).
fn name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')
}

fn encode_word(word: &str, dir: &Directory) -> String {
    if word.is_empty() {
        return String::new();
    }
    for (sigil, known) in [('@', &dir.users), ('#', &dir.channels)] {
        if let Some(rest) = word.strip_prefix(sigil) {
            let end = rest.find(|c| !name_char(c)).unwrap_or(rest.len());
            // A name does not end with a dot: `@chima.` is `@chima` then `.`.
            let name = rest[..end].trim_end_matches('.');
            let tail = &rest[name.len()..];
            if sigil == '@' && matches!(name, "here" | "channel" | "everyone") {
                return format!("<!{name}>{}", escape(tail));
            }
            if let Some((_, id)) = known.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)) {
                return if sigil == '@' {
                    format!("<@{id}>{}", escape(tail))
                } else {
                    format!("<#{id}|{name}>{}", escape(tail))
                };
            }
        }
    }
    if let Some(scheme) = word.find("://") {
        let start = word[..scheme]
            .rfind(|c: char| !c.is_ascii_alphabetic())
            .map(|i| i + 1)
            .unwrap_or(0);
        let (before, url) = word.split_at(start);
        let end = url.trim_end_matches(['.', ',', ')', '!', '?', ':']).len();
        let (url, after) = url.split_at(end);
        return format!("{}<{}>{}", escape(before), escape(url), escape(after));
    }
    // Host names and addresses between `/` and `,` (`prod/web1.example.com,web2.example.com`).
    let mut out = String::new();
    let mut piece = String::new();
    for c in word.chars() {
        if c == '/' || c == ',' {
            out.push_str(&linkify(&piece));
            piece.clear();
            out.push(c);
        } else {
            piece.push(c);
        }
    }
    out.push_str(&linkify(&piece));
    out
}

/// Top-level domains the fake's link detection knows (Slack's knows them all).
const TLDS: &[&str] = &[
    "com", "net", "org", "io", "dev", "app", "co", "example", "internal", "local",
];

fn is_host(text: &str) -> bool {
    let labels: Vec<&str> = text.split('.').collect();
    labels.len() >= 2
        && labels.iter().all(|l| {
            !l.is_empty()
                && !l.starts_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
        && labels
            .last()
            .is_some_and(|tld| TLDS.contains(&tld.to_ascii_lowercase().as_str()))
}

fn linkify(piece: &str) -> String {
    let end = piece.trim_end_matches(['.', ')', '!', '?', ':', ';']).len();
    let (core, after) = piece.split_at(end);
    if let Some((local, host)) = core.split_once('@')
        && !local.is_empty()
        && is_host(host)
    {
        return format!("<mailto:{core}|{core}>{}", escape(after));
    }
    if is_host(core) {
        return format!("<http://{core}|{core}>{}", escape(after));
    }
    escape(piece)
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
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
    fn forms_round_trip() {
        let body = form_encode(&[("command", "/deploy"), ("text", "web/a b&c=d é")]);
        assert_eq!(body, "command=%2Fdeploy&text=web%2Fa+b%26c%3Dd+%C3%A9");
        assert_eq!(
            form_pairs(&body),
            vec![
                ("command".to_owned(), "/deploy".to_owned()),
                ("text".to_owned(), "web/a b&c=d é".to_owned()),
            ]
        );
    }

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
    fn typed_lines_are_sent_as_slack_encodes_them() {
        assert_eq!(encode("chima deploy web"), "chima deploy web");
        assert_eq!(
            encode("chima deploy app to staging/web1.example.com,web2.example.com"),
            "chima deploy app to staging/<http://web1.example.com|web1.example.com>,<http://web2.example.com|web2.example.com>"
        );
        assert_eq!(
            encode("@chima: lock app in prod db & cache <b> see https://ci.example.com/b?a=1&b=2."),
            "<@U0CHIMA>: lock app in prod db &amp; cache &lt;b&gt; see <https://ci.example.com/b?a=1&amp;b=2>."
        );
        assert_eq!(
            encode("ask @alice or @bob in #deploys, @here ops@acme.example"),
            "ask <@U0ALICE> or @bob in <#C0DEPLOYS|deploys>, <!here> <mailto:ops@acme.example|ops@acme.example>"
        );
        assert_eq!(
            encode("web/v1.2.3 deploy:version a.b"),
            "web/v1.2.3 deploy:version a.b"
        );
    }

    #[test]
    fn envelope_ids_are_unique() {
        assert_ne!(envelope_id(), envelope_id());
    }
}
