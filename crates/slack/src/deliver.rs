//! Slack's side of the `chat` outbox (ARCHITECTURE.md, "The crates": the outbox): each deployment
//! gets one Slack message, posted in the thread of the command that asked for it, and
//! every later state change edits that message in place.
//!
//! This is a [`Deliver`]er: the loop that takes the events from the store (per
//! deployment only its oldest undelivered one, so a deployment's messages go out in
//! order), runs them concurrently and retries with backoff is `chima-outbox`'s. What the
//! deliverer keeps between events (the message's ids, the command's `response_url`, the
//! last log lines) it reads and writes through [`ChatRecords`], never the store itself.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chima_deliver::{
    ChatMessage, ChatRecords, Deliver, Deployment, DeploymentState, Event, Outcome, RecordError,
};

use crate::api::{Message, SlackApi};
use crate::error::SlackError;
use crate::render::{DeploymentView, MAX_LOG_LINES, render};

/// How the sender links to a deployment's log page: deployment id to URL.
pub type LogUrl = Arc<dyn Fn(i64) -> String + Send + Sync>;

/// The channel for deployments of an app that name no room, if any.
pub type FallbackChannel = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// The channel recorded (with ts `-`) for a deployment whose message lives at its
/// command's `response_url`: later changes replace it there while the route lasts.
pub const AT_RESPONSE_URL: &str = "response_url";

/// The outbox target this sender delivers.
pub const CHAT_TARGET: &str = "chat";

/// An error that is neither known to be transient nor known to be permanent is tried
/// this many times, then given up.
const UNKNOWN_ERROR_ATTEMPTS: i32 = 6;

/// Delivers outbox events of target `chat` ([`CHAT_TARGET`]).
///
/// Each deployment gets one `chat.postMessage` in the room faseng decided for it
/// (`_faseng.chat` of its payload, in its thread if any). A deployment without one (or
/// whose adapter is not Slack) goes to `fallback_channel(app)`, or gets no message at
/// all. The message's ids are saved with [`ChatRecords::set_chat_message`]; every
/// later state change is a `chat.update` of it, re-rendered from the deployment as it is
/// then (with the last log lines when it failed), the link from `log_url(id)`. A
/// deployment started by a slash command reports at its `response_url` while that
/// route lasts ([`ChatRecords::use_chat_route`]).
///
/// A 429 is retried at its `Retry-After`; other failures with the loop's backoff,
/// forever for outages so that nothing is lost. Errors that can never work
/// (`channel_not_found`, `not_in_channel`, `invalid_auth`, ...) are logged and given up.
pub struct ChatDeliverer {
    records: Arc<dyn ChatRecords>,
    api: SlackApi,
    log_url: LogUrl,
    fallback_channel: FallbackChannel,
    /// Messages posted whose ids the records could not save yet: a retry edits them
    /// instead of posting a second message.
    posted: Mutex<HashMap<i64, (String, String)>>,
}

impl ChatDeliverer {
    /// A deliverer posting through `api` and keeping its message ids in `records`.
    /// `log_url` links each message to its deployment's log; `fallback_channel` gives the
    /// channel for an app's deployments that name no room.
    pub fn new(
        records: Arc<dyn ChatRecords>,
        api: SlackApi,
        log_url: LogUrl,
        fallback_channel: FallbackChannel,
    ) -> Self {
        tracing::info!(api_url = %api.api_url(), "chat deliverer ready");
        ChatDeliverer {
            records,
            api,
            log_url,
            fallback_channel,
            posted: Mutex::new(HashMap::new()),
        }
    }
}

#[async_trait]
impl Deliver for ChatDeliverer {
    fn target(&self) -> &str {
        CHAT_TARGET
    }

    async fn deliver(&self, event: &Event, deployment: &Deployment) -> Outcome {
        match self.try_deliver(event, deployment).await {
            Ok(()) => {
                self.announce(event, deployment).await;
                Outcome::Delivered
            }
            Err(Failure::GiveUp(error)) => {
                tracing::warn!(event = %event.state, %error, "chat message given up");
                Outcome::GaveUp {
                    error,
                    record: false,
                }
            }
            Err(Failure::Retry { error, after }) => Outcome::Retry { error, after },
        }
    }
}

/// The thread reply for an approval (its event carries `approved_by`, or is the
/// `queued` that followed the last approval), escaped: `alice's deployment #12 of web/main to production was
/// approved by bob (1 of 2).`
fn approval_note(entry: &Event, d: &Deployment) -> Option<String> {
    let reason = entry.payload.get("reason")?.as_str()?;
    // An approval not yet enough (`approved_by`), or the one that made it queued: a
    // reply of its own, since the message is edited on to running and done at once.
    let partial = entry.payload.get("approved_by").is_some();
    let last = entry.state == DeploymentState::Queued && reason.starts_with("approved by ");
    if !partial && !last {
        return None;
    }
    Some(crate::mrkdwn::escape(&format!(
        "{}'s deployment #{} of {}/{} to {} was {}.",
        d.requester,
        d.id,
        d.app,
        d.git_ref,
        d.environment,
        reason.trim_end_matches('.')
    )))
}

/// Why an entry was not delivered.
enum Failure {
    /// Try again, not before `after` when Slack said how long to wait.
    Retry {
        error: String,
        after: Option<Duration>,
    },
    /// It can never work: log it and move on.
    GiveUp(String),
}

impl ChatDeliverer {
    async fn try_deliver(&self, entry: &Event, d: &Deployment) -> Result<(), Failure> {
        let store_failure = |e: RecordError| Failure::Retry {
            error: e.to_string(),
            after: None,
        };
        let existing = match self
            .records
            .chat_message(d.id)
            .await
            .map_err(store_failure)?
        {
            Some(m) => Some(m),
            None => self.unsaved(d.id),
        };
        match existing {
            Some(message) if message.channel == AT_RESPONSE_URL => {
                if entry.state != d.state {
                    return Ok(());
                }
                let msg = self.render(d).await;
                if self.respond(entry, d, &msg, true).await? {
                    return Ok(());
                }
                // The command's response_url is spent or expired: a new message where
                // the bot can post, edited from then on.
                let Some(channel) = self.fallback(d) else {
                    tracing::warn!(deployment = d.id, app = %d.app, state = %d.state, "the command's response_url is spent or expired and the app has no notify_room: this chat message cannot be delivered anywhere");
                    return Ok(());
                };
                self.post(entry, d, &channel, None, &msg).await
            }
            Some(message) => {
                if let Some(note) = approval_note(entry, d) {
                    // An approval that is not yet enough changes no state: the thread
                    // hears of it in a reply of its own.
                    let thread = chima_payload::DeploymentPayload::chat_target_of(&d.payload)
                        .and_then(|t| t.thread_ts)
                        .unwrap_or_else(|| message.ts.clone());
                    return match self
                        .api
                        .post(&message.channel, Some(&thread), &Message::text(note))
                        .await
                    {
                        Ok(_) => Ok(()),
                        Err(e) => Err(failure(entry, e)),
                    };
                }
                if entry.state != d.state {
                    // A later entry carries the current state and edits the message then:
                    // this edit would show nothing new.
                    return Ok(());
                }
                let msg = self.render(d).await;
                self.update(entry, d, &message, &msg).await
            }
            None => {
                let msg = self.render(d).await;
                if self.respond(entry, d, &msg, false).await? {
                    return self.save(d.id, AT_RESPONSE_URL, "-").await;
                }
                let Some((channel, thread)) = self.target(d) else {
                    tracing::debug!(deployment = d.id, app = %d.app, "no chat room for this deployment; nothing sent");
                    return Ok(());
                };
                match self.post(entry, d, &channel, thread.as_deref(), &msg).await {
                    // The bot is not in the command's channel (a DM, a private channel)
                    // and its response_url is spent: the app's notify_room instead.
                    Err(Failure::GiveUp(error))
                        if error.contains("not_in_channel")
                            || error.contains("channel_not_found") =>
                    {
                        match self.fallback(d).filter(|f| *f != channel) {
                            Some(fallback) => {
                                tracing::info!(deployment = d.id, %error, %fallback, "cannot post in the command's channel; posting in the app's notify_room");
                                self.post(entry, d, &fallback, None, &msg).await
                            }
                            None => {
                                tracing::warn!(deployment = d.id, app = %d.app, %error, "the bot cannot post in the command's channel and the app has no other notify_room: this chat message cannot be delivered anywhere");
                                Err(Failure::GiveUp(error))
                            }
                        }
                    }
                    other => other,
                }
            }
        }
    }

    /// A break-glass deployment is announced in the app's `notify_room` too (besides
    /// its own message in the requester's room), once: with its `queued` event, after
    /// that event's message went out. Best effort: a failure is logged, never retried
    /// (the deployment's own message says EMERGENCY all the same).
    async fn announce(&self, event: &Event, d: &Deployment) {
        if event.state != DeploymentState::Queued {
            return;
        }
        let Some(reason) = chima_payload::DeploymentPayload::emergency_of(&d.payload) else {
            return;
        };
        let Some(room) = self.fallback(d) else {
            tracing::warn!(deployment = d.id, app = %d.app, "break-glass deployment: the app has no notify_room to announce it in");
            return;
        };
        if self
            .target(d)
            .is_some_and(|(channel, thread)| channel == room && thread.is_none())
        {
            // Its own message is already there, marked EMERGENCY.
            return;
        }
        let url = (self.log_url)(d.id);
        let msg = Message::text(crate::render::announcement(d, &reason, &url));
        match self.api.post(&room, None, &msg).await {
            Ok(_) => tracing::info!(deployment = d.id, %room, "break-glass deployment announced"),
            Err(e) => {
                tracing::warn!(deployment = d.id, %room, error = %e, "cannot announce the break-glass deployment in the notify_room")
            }
        }
    }

    /// The app's notify_room, if any.
    fn fallback(&self, d: &Deployment) -> Option<String> {
        (self.fallback_channel)(&d.app)
            .map(|c| c.trim().to_owned())
            .filter(|c| !c.is_empty())
    }

    /// Posts through the route of the deployment's command (its slash command's
    /// `response_url`), if it has one with uses left: `Ok(true)` when delivered there,
    /// `Ok(false)` when there is no usable route (none, expired, spent: Slack's
    /// `used_url` / `expired_url`), so that the caller posts elsewhere.
    async fn respond(
        &self,
        entry: &Event,
        d: &Deployment,
        msg: &Message,
        replace_original: bool,
    ) -> Result<bool, Failure> {
        let url = match self.records.use_chat_route(&d.source_key).await {
            Ok(Some(url)) => url,
            Ok(None) => return Ok(false),
            Err(e) => {
                return Err(Failure::Retry {
                    error: e.to_string(),
                    after: None,
                });
            }
        };
        if !crate::response_url_allowed(&url, self.api.api_url()) {
            tracing::warn!(
                deployment = d.id,
                "the deployment's chat route is not a Slack response_url; dropped"
            );
            let _ = self.records.drop_chat_route(&d.source_key).await;
            return Ok(false);
        }
        let result = match self.api.respond(&url, msg, replace_original).await {
            Err(e) if is_blocks_error(&e) && msg.blocks.is_some() => {
                self.api
                    .respond(&url, &Message::text(msg.text.clone()), replace_original)
                    .await
            }
            other => other,
        };
        match result {
            Ok(()) => {
                tracing::debug!(deployment = d.id, state = %d.state, replace_original, "chat message sent to the command's response_url");
                Ok(true)
            }
            Err(e) if e.is_transient() => Err(failure(entry, e)),
            Err(e) => {
                tracing::info!(deployment = d.id, error = %e, "the command's response_url refused the message; posting elsewhere");
                if let Err(e) = self.records.drop_chat_route(&d.source_key).await {
                    tracing::warn!(deployment = d.id, error = %e, "cannot drop a spent chat route");
                }
                Ok(false)
            }
        }
    }

    /// Where the first message goes: where faseng decided (`_faseng.chat`: the room and
    /// thread of a verified chima request, a room of the app, or its `notify_room`),
    /// else the app's fallback channel. Never a room named only by the payload.
    fn target(&self, d: &Deployment) -> Option<(String, Option<String>)> {
        if let Some(t) = chima_payload::DeploymentPayload::chat_target_of(&d.payload)
            && (t.adapter.is_empty() || t.adapter.eq_ignore_ascii_case("slack"))
            && !t.room.trim().is_empty()
        {
            return Some((t.room.trim().to_owned(), t.thread_ts));
        }
        (self.fallback_channel)(&d.app)
            .map(|c| c.trim().to_owned())
            .filter(|c| !c.is_empty())
            .map(|c| (c, None))
    }

    async fn render(&self, d: &Deployment) -> Message {
        let url = (self.log_url)(d.id);
        let lines = if matches!(d.state, DeploymentState::Failed | DeploymentState::Errored) {
            self.last_lines(d.id).await
        } else {
            Vec::new()
        };
        render(&DeploymentView {
            deployment: d,
            log_url: Some(url.as_str()).filter(|u| !u.is_empty()),
            last_lines: &lines,
        })
    }

    /// The last lines of the log; none when the records cannot say (the message goes
    /// out without them rather than not at all).
    async fn last_lines(&self, id: i64) -> Vec<String> {
        match self.records.last_log_lines(id, MAX_LOG_LINES).await {
            Ok(lines) => lines,
            Err(e) => {
                tracing::warn!(deployment = id, error = %e, "cannot read log lines for the chat message");
                Vec::new()
            }
        }
    }

    async fn post(
        &self,
        entry: &Event,
        d: &Deployment,
        channel: &str,
        thread: Option<&str>,
        msg: &Message,
    ) -> Result<(), Failure> {
        let posted = match self.api.post(channel, thread, msg).await {
            Ok(posted) => posted,
            Err(e) if is_blocks_error(&e) && msg.blocks.is_some() => {
                tracing::warn!(deployment = d.id, error = %e, "Slack refused the blocks; posting the text only");
                self.api
                    .post(channel, thread, &Message::text(msg.text.clone()))
                    .await
                    .map_err(|e| failure(entry, e))?
            }
            Err(e) => return Err(failure(entry, e)),
        };
        tracing::debug!(deployment = d.id, channel = %posted.channel, ts = %posted.ts, "chat message posted");
        self.save(d.id, &posted.channel, &posted.ts).await
    }

    async fn update(
        &self,
        entry: &Event,
        d: &Deployment,
        message: &ChatMessage,
        msg: &Message,
    ) -> Result<(), Failure> {
        match self
            .api
            .update_message(&message.channel, &message.ts, msg)
            .await
        {
            Ok(()) => {
                tracing::debug!(deployment = d.id, state = %d.state, "chat message updated");
                Ok(())
            }
            Err(e) if is_blocks_error(&e) && msg.blocks.is_some() => {
                tracing::warn!(deployment = d.id, error = %e, "Slack refused the blocks; updating with the text only");
                self.api
                    .update_message(
                        &message.channel,
                        &message.ts,
                        &Message::text(msg.text.clone()),
                    )
                    .await
                    .map_err(|e| failure(entry, e))
            }
            Err(e)
                if matches!(
                    e.api_code(),
                    Some("message_not_found" | "cant_update_message" | "edit_window_closed")
                ) =>
            {
                // The message was deleted (or can no longer be edited): post a new one
                // where the old one was, so the state change is not lost.
                tracing::info!(deployment = d.id, error = %e, "chat message cannot be edited; posting a new one");
                let thread = self
                    .target(d)
                    .filter(|(channel, _)| *channel == message.channel)
                    .and_then(|(_, thread)| thread);
                self.post(entry, d, &message.channel, thread.as_deref(), msg)
                    .await
            }
            Err(e) => Err(failure(entry, e)),
        }
    }

    /// Saves a posted message's ids; kept in memory too until the store has them.
    async fn save(&self, id: i64, channel: &str, ts: &str) -> Result<(), Failure> {
        self.lock_posted()
            .insert(id, (channel.to_owned(), ts.to_owned()));
        match self.records.set_chat_message(id, channel, ts).await {
            Ok(()) => {
                self.lock_posted().remove(&id);
                Ok(())
            }
            Err(e) => {
                // Sent all the same: the next entry edits the message (from memory if the
                // store still cannot say).
                tracing::warn!(deployment = id, error = %e, "chat message posted but its id could not be saved");
                Ok(())
            }
        }
    }

    fn unsaved(&self, id: i64) -> Option<ChatMessage> {
        self.lock_posted()
            .get(&id)
            .map(|(channel, ts)| ChatMessage {
                channel: channel.clone(),
                ts: ts.clone(),
            })
    }

    fn lock_posted(&self) -> std::sync::MutexGuard<'_, HashMap<i64, (String, String)>> {
        self.posted.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Slack refused the message for its blocks, not for where it goes: the same message as
/// plain text can still get through. `invalid_blocks` (a block Slack cannot read, or
/// over its limits: 3,000 characters of section text, 50 blocks) and
/// `msg_blocks_too_long` (https://api.slack.com/methods/chat.postMessage#errors).
fn is_blocks_error(e: &SlackError) -> bool {
    matches!(
        e.api_code(),
        Some("invalid_blocks" | "invalid_blocks_format" | "msg_blocks_too_long")
    )
}

/// What to do about a failed call.
fn failure(entry: &Event, e: SlackError) -> Failure {
    let error = e.to_string();
    match e {
        SlackError::RateLimited { retry_after, .. } => Failure::Retry {
            error,
            after: retry_after,
        },
        e if e.is_transient() => Failure::Retry { error, after: None },
        e if e.is_permanent() => Failure::GiveUp(error),
        _ if entry.attempts + 1 >= UNKNOWN_ERROR_ATTEMPTS => Failure::GiveUp(error),
        _ => Failure::Retry { error, after: None },
    }
}
