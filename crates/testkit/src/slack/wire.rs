//! Slack's wire formats as the fake reads and answers them: the size limits
//! of a message, `{"ok": ...}` answers and failures, and form encoding.

use axum::http::StatusCode;
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::Failure;

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
pub(super) fn refuse_size(text: Option<&str>, blocks: Option<&Value>) -> Option<Response> {
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
            Some("actions") => {
                if let Some(reason) = refuse_actions(i, block) {
                    return invalid(reason);
                }
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

/// An `actions` block as Slack checks it
/// (https://api.slack.com/reference/block-kit/blocks#actions): 1 to 25 elements, a
/// `block_id` of at most 255 characters; each `button`
/// (https://api.slack.com/reference/block-kit/block-elements#button) with a
/// `plain_text` label of at most 75 characters, an `action_id` of at most 255 characters
/// unique within the block, a `value` of at most 2,000 characters, a `url` of at most
/// 3,000, and a `style` of `primary` or `danger` when it has one.
fn refuse_actions(i: usize, block: &Value) -> Option<String> {
    let at = |what: &str| format!("[json-pointer:/blocks/{i}{what}]");
    if block["block_id"]
        .as_str()
        .is_some_and(|b| b.chars().count() > 255)
    {
        return Some(format!(
            "must be less than 256 characters {}",
            at("/block_id")
        ));
    }
    let Some(elements) = block["elements"].as_array() else {
        return Some(format!("missing required field: elements {}", at("")));
    };
    if elements.is_empty() || elements.len() > 25 {
        return Some(format!(
            "must provide between 1 and 25 items {}",
            at("/elements")
        ));
    }
    let mut action_ids = std::collections::HashSet::new();
    for (j, e) in elements.iter().enumerate() {
        let at = |what: &str| at(&format!("/elements/{j}{what}"));
        let longer = |v: &Value, max: usize| v.as_str().is_some_and(|t| t.chars().count() > max);
        if e["type"].as_str() != Some("button") {
            continue;
        }
        if e["text"]["type"].as_str() != Some("plain_text") {
            return Some(format!("must be a plain_text text object {}", at("/text")));
        }
        if e["text"]["text"].as_str().is_none_or(str::is_empty) || longer(&e["text"]["text"], 75) {
            return Some(format!(
                "must be between 1 and 75 characters {}",
                at("/text/text")
            ));
        }
        if longer(&e["action_id"], 255) {
            return Some(format!(
                "must be less than 256 characters {}",
                at("/action_id")
            ));
        }
        if let Some(id) = e["action_id"].as_str()
            && !action_ids.insert(id.to_owned())
        {
            return Some(format!("non-unique action_id '{id}' {}", at("/action_id")));
        }
        if longer(&e["value"], 2000) {
            return Some(format!(
                "must be less than 2001 characters {}",
                at("/value")
            ));
        }
        if longer(&e["url"], 3000) {
            return Some(format!("must be less than 3001 characters {}", at("/url")));
        }
        if let Some(style) = e.get("style")
            && !matches!(style.as_str(), Some("primary" | "danger"))
        {
            return Some(format!("must be one of primary, danger {}", at("/style")));
        }
    }
    None
}

/// Slack's limits (`refuse_size` in this module refuses a message over them).
pub const MAX_TEXT_CHARS: usize = 40_000;
pub const MAX_BLOCKS: usize = 50;
pub const MAX_SECTION_CHARS: usize = 3000;

/// Blocks arrive as a JSON array (JSON bodies) or as JSON text (form bodies).
pub(super) fn blocks_arg(value: Option<&Value>) -> Option<Value> {
    match value? {
        Value::String(text) => serde_json::from_str(text).ok(),
        Value::Null => None,
        other => Some(other.clone()),
    }
}

pub(super) fn ok(mut body: Value) -> Response {
    body["ok"] = Value::Bool(true);
    json_response(StatusCode::OK, &body)
}

pub(super) fn ok_false(error: &str) -> Response {
    json_response(StatusCode::OK, &json!({"ok": false, "error": error}))
}

pub(super) fn failed(failure: Failure) -> Response {
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

pub(super) fn json_response(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        body.to_string(),
    )
        .into_response()
}

pub(super) fn header_text(headers: &HeaderMap, name: &str) -> Option<String> {
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

pub(super) fn decode(text: &str) -> String {
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
}
