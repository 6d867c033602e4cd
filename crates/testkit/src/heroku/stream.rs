//! The build output stream: served slowly in pieces, resumable with
//! `Range: bytes=N-`, and failing as the scripted [`StreamFault`] says.

use axum::body::{Body, Bytes};
use axum::http::StatusCode;
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};

use super::StreamFault;
use super::fake::{Shared, lock};

/// The build output: plain text, chunked, slow, from the byte a
/// `Range: bytes=N-` header asks for (206), failing as
/// [`Behaviour::stream_fault`] says.
pub(super) fn stream(state: &Shared, id: &str, headers: &HeaderMap) -> Response {
    let mut st = lock(state);
    if !st.builds.contains_key(id) {
        return (StatusCode::NOT_FOUND, "stream not found\n").into_response();
    }
    let fault = st.behaviour.stream_fault;
    if let StreamFault::Refused(status) = fault {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        return (status, "stream unavailable\n").into_response();
    }
    let drop_after = match fault {
        StreamFault::Drops { after_bytes, times } if st.streams_dropped < times => {
            st.streams_dropped += 1;
            Some(after_bytes)
        }
        _ => None,
    };
    let b = &st.behaviour;
    let mut text = b.output.join("\n");
    if !text.is_empty() {
        text.push('\n');
    }
    let total = text.len();
    let from = match headers.get(header::RANGE).map(range_start) {
        None => None,
        Some(Some(from)) if from < total => Some(from),
        // Nothing past the end, or a Range this fake does not serve: 416,
        // as RFC 9110 section 15.5.17 says.
        Some(_) => {
            return (
                StatusCode::RANGE_NOT_SATISFIABLE,
                [(header::CONTENT_RANGE, format!("bytes */{total}"))],
            )
                .into_response();
        }
    };
    let rest = &text.as_bytes()[from.unwrap_or(0)..];
    let sent = drop_after.map_or(rest, |n| &rest[..n.min(rest.len())]);
    let pieces = split_pieces(sent, b.chunks.max(1));
    let delay = b.chunk_delay;
    let stays_open = b.stream_stays_open;
    let chunks = futures::stream::unfold(pieces.into_iter(), move |mut rest| async move {
        match rest.next() {
            Some(piece) => {
                tokio::time::sleep(delay).await;
                Some((Ok::<_, std::io::Error>(piece), rest))
            }
            None if drop_after.is_some() => {
                // An error in the body makes the server cut the connection
                // without ending the chunked body.
                tokio::time::sleep(delay).await;
                Some((Err(std::io::Error::other("dropped by the fake")), rest))
            }
            None => {
                if stays_open {
                    std::future::pending::<()>().await;
                }
                None
            }
        }
    });
    let mut response = (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        Body::from_stream(chunks),
    )
        .into_response();
    if let Some(from) = from {
        *response.status_mut() = StatusCode::PARTIAL_CONTENT;
        if let Ok(range) = HeaderValue::from_str(&format!("bytes {from}-{}/{total}", total - 1)) {
            response.headers_mut().insert(header::CONTENT_RANGE, range);
        }
    }
    response
}

/// `N` of `Range: bytes=N-`; `None` for any other range.
pub(super) fn range_start(value: &HeaderValue) -> Option<usize> {
    value
        .to_str()
        .ok()?
        .trim()
        .strip_prefix("bytes=")?
        .strip_suffix('-')?
        .parse()
        .ok()
}

/// Cuts `bytes` into `n` pieces of about equal size, anywhere (also inside a
/// UTF-8 character), as a network may.
pub(super) fn split_pieces(bytes: &[u8], n: usize) -> Vec<Bytes> {
    let size = bytes.len().div_ceil(n.max(1)).max(1);
    bytes.chunks(size).map(Bytes::copy_from_slice).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_cover_the_bytes() {
        let text = "héllo\nwörld\n".as_bytes();
        for n in 1..8 {
            let pieces = split_pieces(text, n);
            assert_eq!(pieces.concat(), text);
            assert!(pieces.len() <= n);
        }
        assert!(split_pieces(b"", 3).is_empty());
    }

    #[test]
    fn only_open_ended_byte_ranges_are_served() {
        let start = |v: &'static str| range_start(&HeaderValue::from_static(v));
        assert_eq!(start("bytes=42-"), Some(42));
        assert_eq!(start("bytes=0-"), Some(0));
        assert_eq!(start("bytes=1-5"), None);
        assert_eq!(start("items=1-"), None);
    }
}
