//! The Web API methods (`POST /api/<method>`): authentication, scopes, the
//! failures a test queued, and each method's answer in Slack's shape, with
//! Slack's refusals for channels the bot cannot post in.

use std::collections::VecDeque;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::Method;
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::response::Response;
use serde_json::{Map, Value, json};

use super::state::{Shared, State_, lock};
use super::wire::{blocks_arg, failed, form_pairs, header_text, ok, ok_false, refuse_size};
use super::{
    APP_ID, APP_TOKEN, ApiCall, BOT_ID, BOT_NAME, BOT_TOKEN, BOT_USER_ID, PostedMessage, TEAM_ID,
    UpdatedMessage,
};

pub(super) async fn api(
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

pub(super) async fn api_answer(
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
pub(super) fn page_of(
    all: Vec<Value>,
    cursor: Option<String>,
    limit: Option<String>,
) -> (Vec<Value>, String) {
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

/// `#deploys` or `deploys` is channel `C0DEPLOYS`; ids are taken as they are.
pub(super) fn resolve_channel(st: &State_, channel: &str) -> String {
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
pub(super) fn refuse_channel(st: &State_, channel: &str) -> Option<&'static str> {
    if st.channels.contains_key(channel) {
        return (!st.members.contains(channel)).then_some("not_in_channel");
    }
    if channel.starts_with('D') {
        return None;
    }
    Some("channel_not_found")
}
