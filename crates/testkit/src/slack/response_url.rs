//! Slash commands' response URLs (`POST /response/<n>`), with Slack's limit
//! on uses and lifetime.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::state::{Shared, lock};
use super::wire::{blocks_arg, header_text, refuse_size};
use super::{RESPONSE_URL_USES, Responded};

/// `POST /response/<n>`: a slash command's response URL, as Slack serves it
/// (https://api.slack.com/interactivity/handling#message_responses): a JSON body with
/// `text` (and/or `blocks`), `response_type` (`in_channel` shows it to the channel,
/// `ephemeral` only to the user) and `replace_original`; up to 5 posts within 30
/// minutes, answered `200 ok` as text; past that HTTP 404 with `used_url` or
/// `expired_url` as text. Posts work in any channel, the bot a member or not.
pub(super) async fn respond(
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
