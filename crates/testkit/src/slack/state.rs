//! What the fake Slack holds between requests: calls, posts, channels and
//! members, Socket Mode connections and the envelopes waiting for one, and the
//! response URLs handed out.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::mpsc;

use super::{ApiCall, Failure, PostedMessage, Responded, UpdatedMessage};

pub(super) enum Outbound {
    Text(String),
    /// Close the TCP connection without a WebSocket close frame.
    Drop,
}

pub(super) struct Connection {
    pub(super) tx: mpsc::UnboundedSender<Outbound>,
    /// Still the one envelopes go to (not told to disconnect, not dropped, not closed).
    pub(super) live: bool,
}

pub(super) struct State_ {
    pub(super) url: String,
    /// The bot token's scopes, sent in `x-oauth-scopes`.
    pub(super) scopes: Vec<String>,
    pub(super) calls: Vec<ApiCall>,
    pub(super) posted: Vec<PostedMessage>,
    pub(super) updated: Vec<UpdatedMessage>,
    pub(super) failures: HashMap<String, VecDeque<Failure>>,
    pub(super) channel_failures: HashMap<String, Failure>,
    pub(super) channels: HashMap<String, String>,
    /// The channels (ids) the bot is a member of.
    pub(super) members: HashSet<String>,
    pub(super) users: HashMap<String, String>,
    pub(super) connections: Vec<Connection>,
    pub(super) accepted: usize,
    /// Envelopes pushed while no connection was live: sent to the next one.
    pub(super) pending: VecDeque<String>,
    pub(super) acks: Vec<Value>,
    pub(super) sent_frames: Vec<Value>,
    pub(super) next_ts: u64,
    /// The response URLs handed out in slash commands, `/response/<n>` being `[n - 1]`.
    pub(super) response_urls: Vec<ResponseUrl>,
    /// How long a response URL works (Slack: 30 minutes).
    pub(super) response_lifetime: Duration,
    pub(super) responded: Vec<Responded>,
}

/// A slash command's response URL: the channel it answers in, when it was made and how
/// often it was used.
pub(super) struct ResponseUrl {
    pub(super) channel: String,
    pub(super) made: Instant,
    pub(super) uses: u32,
}

pub(super) type Shared = Arc<Mutex<State_>>;

pub(super) fn lock(state: &Shared) -> MutexGuard<'_, State_> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}
