//! The running fake Slack and the calls a test makes on it: set up channels,
//! users and failures, push events over Socket Mode, make slash commands, and
//! read back what the app sent.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::{any, get};
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::payloads::{envelope_id, event_callback_raw, events_api_envelope, slash_command_fields};
use super::response_url::respond;
use super::socket::socket;
use super::state::{Outbound, ResponseUrl, Shared, State_, lock};
use super::text::{directory, encode_with};
use super::web_api::api;
use super::wire::form_encode;
use super::{
    ApiCall, Failure, PostedMessage, RESPONSE_URL_LIFETIME, RESPONSE_URL_USES, Responded,
    UpdatedMessage,
};

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
    /// is made with (<https://api.slack.com/authentication/oauth-v2#asking>).
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
    /// (<https://api.slack.com/methods/chat.postMessage#errors>), although slash commands
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
    /// channels: see [`encode`](super::encode).
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

    /// A click by `user` on the button `action_id` of the message `ts` in `channel`, as
    /// Slack sends it over Socket Mode: an `interactive` envelope around a
    /// `block_actions` payload
    /// (https://api.slack.com/reference/interaction-payloads/block-actions,
    /// https://api.slack.com/interactivity/handling), with a response URL of this fake
    /// for the answer. The message as it is now (posted, then edited) must have that
    /// button, as in Slack, where only what is shown can be clicked; its `value` is
    /// the button's. `None` when the message or the button is not there.
    pub fn click(&self, channel: &str, ts: &str, action_id: &str, user: &str) -> Option<Value> {
        let payload = self.block_actions(channel, ts, action_id, user)?;
        Some(json!({
            "envelope_id": envelope_id(),
            "payload": payload,
            "type": "interactive",
            "accepts_response_payload": false,
        }))
    }

    /// The `block_actions` payload of [`FakeSlack::click`], as the Events API's
    /// interactivity URL gets it in its `payload` form field.
    pub fn block_actions(
        &self,
        channel: &str,
        ts: &str,
        action_id: &str,
        user: &str,
    ) -> Option<Value> {
        let (blocks, thread_ts, user_name) = {
            let st = lock(&self.state);
            let posted = st
                .posted
                .iter()
                .find(|p| p.channel == channel && p.ts == ts)?;
            let blocks = st
                .updated
                .iter()
                .rev()
                .find(|u| u.channel == channel && u.ts == ts)
                .map(|u| u.blocks.clone())
                .unwrap_or_else(|| posted.blocks.clone())?;
            let name = st
                .users
                .get(user)
                .cloned()
                .unwrap_or_else(|| user.to_owned());
            (blocks, posted.thread_ts.clone(), name)
        };
        let (block_id, button) = blocks.as_array()?.iter().find_map(|b| {
            let button = b["elements"]
                .as_array()?
                .iter()
                .find(|e| e["type"] == "button" && e["action_id"] == action_id)?;
            Some((b["block_id"].clone(), button.clone()))
        })?;
        let response_url = self.response_url_for(channel);
        let mut container = json!({
            "type": "message",
            "message_ts": ts,
            "channel_id": channel,
            "is_ephemeral": false,
        });
        if let Some(t) = &thread_ts {
            container["thread_ts"] = json!(t);
        }
        Some(json!({
            "type": "block_actions",
            "user": {"id": user, "username": user_name, "name": user_name, "team_id": "T0FAKE"},
            "api_app_id": "A0FAKE",
            "token": "verification_token",
            "container": container,
            "trigger_id": format!("{}.{}.fake", ts.replace('.', ""), action_id.len()),
            "team": {"id": "T0FAKE", "domain": "fake"},
            "channel": {"id": channel, "name": channel},
            "message": {"type": "message", "ts": ts, "thread_ts": thread_ts, "blocks": blocks},
            "response_url": response_url,
            "actions": [{
                "action_id": action_id,
                "block_id": block_id,
                "text": button["text"].clone(),
                "value": button["value"].clone(),
                "style": button["style"].clone(),
                "type": "button",
                "action_ts": "1596530385.194939",
            }],
        }))
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
