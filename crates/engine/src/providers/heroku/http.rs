//! The HTTP client of the runner and the helpers that keep what servers say
//! bounded (bodies), readable (`Retry-After`, Heroku's error messages),
//! printable and free of the API key.

use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::{Body as _, Bytes, Incoming};
use hyper::header::HeaderValue;
use hyper::{Request, Response};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

/// Why one exchange failed.
pub(super) enum Exchange {
    /// Worth retrying: the request may not have reached Heroku, or the
    /// answer was lost on the way.
    Network(String),
    /// Retrying cannot help.
    Fatal(String),
}

pub(super) const USER_AGENT_VALUE: &str = concat!("faseng/", env!("CARGO_PKG_VERSION"), " (chima)");

/// The HTTP client: HTTPS with the machine's root certificates, plain HTTP
/// for local fakes. A machine without root certificates can still talk to a
/// fake over plain HTTP; HTTPS then fails with a clear reason.
pub(super) enum Http {
    Tls(Client<HttpsConnector<HttpConnector>, Full<Bytes>>),
    Plain {
        client: Client<HttpConnector, Full<Bytes>>,
        why_no_tls: String,
    },
}

impl Http {
    pub(super) fn new() -> Http {
        let mut tcp = HttpConnector::new();
        tcp.set_connect_timeout(Some(Duration::from_secs(10)));
        tcp.set_nodelay(true);
        let builder = Client::builder(TokioExecutor::new());
        // Only the ring provider is compiled in (see CRATES.md), so rustls
        // picks it without a process-wide default being installed.
        match HttpsConnectorBuilder::new().with_native_roots() {
            Ok(tls) => {
                tcp.enforce_http(false);
                let connector = tls.https_or_http().enable_http1().wrap_connector(tcp);
                Http::Tls(builder.build(connector))
            }
            Err(e) => Http::Plain {
                client: builder.build(tcp),
                why_no_tls: e.to_string(),
            },
        }
    }

    pub(super) async fn send(
        &self,
        request: Request<Full<Bytes>>,
    ) -> Result<Response<Incoming>, Exchange> {
        let sent = match self {
            Http::Tls(client) => client.request(request).await,
            Http::Plain { client, why_no_tls } => {
                if request.uri().scheme_str() == Some("https") {
                    return Err(Exchange::Fatal(format!(
                        "cannot reach {} over HTTPS: this machine has no usable root \
                         certificates ({why_no_tls}); install ca-certificates",
                        request.uri().host().unwrap_or("the Heroku API")
                    )));
                }
                client.request(request).await
            }
        };
        sent.map_err(|e| Exchange::Network(chain(&e)))
    }
}

/// Why a body could not be read whole.
pub(super) enum Read {
    TooBig,
    Broken(String),
}

/// Reads a body, refusing more than `limit` bytes.
pub(super) async fn read_limited(mut body: Incoming, limit: usize) -> Result<Bytes, Read> {
    let announced = body.size_hint().exact().unwrap_or(0);
    if usize::try_from(announced).map_or(true, |n| n > limit) {
        return Err(Read::TooBig);
    }
    let mut buf = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| Read::Broken(chain(&e)))?;
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > limit {
                return Err(Read::TooBig);
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(Bytes::from(buf))
}

/// `Retry-After` as seconds or as an HTTP date.
pub(super) fn parse_retry_after(value: &HeaderValue) -> Option<Duration> {
    let text = value.to_str().ok()?.trim();
    if let Ok(secs) = text.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = chrono::DateTime::parse_from_rfc2822(text).ok()?;
    let secs = (when.with_timezone(&chrono::Utc) - chrono::Utc::now()).num_seconds();
    Some(Duration::from_secs(u64::try_from(secs).unwrap_or(0)))
}

/// The `message` of a Heroku error object (`{"id": ..., "message": ...}`),
/// else the start of the body, made safe to show.
pub(super) fn heroku_message(body: &[u8]) -> String {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let message = parsed
        .as_ref()
        .and_then(|v| v.get("message"))
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
    let message = printable(message.trim(), 300);
    if message.is_empty() {
        "no message".to_string()
    } else {
        message
    }
}

/// At most `max` characters of `text`, control characters replaced, so that a
/// server's answer cannot break the log or a chat message.
pub(super) fn printable(text: &str, max: usize) -> String {
    let mut out: String = text
        .chars()
        .take(max)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.chars().nth(max).is_some() {
        out.push('…');
    }
    out
}

/// An error with its causes (`client error (Connect): tcp connect error: ...`).
pub(super) fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let more = cause.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = cause.source();
    }
    text
}

/// Hides the API key should a server or a library ever echo it.
pub(super) fn scrub(text: &str, key: &str) -> String {
    if key.len() >= 4 && text.contains(key) {
        text.replace(key, "[REDACTED]")
    } else {
        text.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let secs = HeaderValue::from_static("7");
        assert_eq!(parse_retry_after(&secs), Some(Duration::from_secs(7)));
        let past = HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT");
        assert_eq!(parse_retry_after(&past), Some(Duration::ZERO));
        assert_eq!(parse_retry_after(&HeaderValue::from_static("soon")), None);
    }

    #[test]
    fn messages_are_taken_from_heroku_errors_and_made_printable() {
        assert_eq!(
            heroku_message(br#"{"id":"unauthorized","message":"Invalid credentials provided."}"#),
            "Invalid credentials provided."
        );
        assert_eq!(
            heroku_message(b"<h1>Bad\nGateway</h1>"),
            "<h1>Bad Gateway</h1>"
        );
        assert_eq!(heroku_message(b""), "no message");
        assert_eq!(printable("abcdef", 3), "abc…");
        assert_eq!(
            scrub("key HRKU-abc in text", "HRKU-abc"),
            "key [REDACTED] in text"
        );
    }
}
