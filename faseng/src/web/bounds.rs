//! Bounds on the web work that can pile up: live log streams (each polls the store for
//! as long as it stays open) and page loads (each reads up to thousands of log lines and
//! renders them). Beyond a bound the answer is at once a 503 with `Retry-After`, never a
//! queue: a burst of browsers (or a script reloading a page) must not starve the store
//! that the deploys, the webhooks and `/healthz` need.
//!
//! One semaphore per kind, in the shared state; a request holds one permit from before
//! its handler runs until its response body is dropped (a stream: until the client goes
//! away or the stream ends). `/healthz`, `/readyz`, `/metrics`, webhooks and the API's
//! calls take no permit, except the API's log fetch, which reads like a page does.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use futures::StreamExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::AppState;

/// What a refused client is told to wait, in seconds.
pub const RETRY_AFTER_SECS: u64 = 5;

/// `FASENG_MAX_STREAMS` when unset.
pub const DEFAULT_MAX_STREAMS: u32 = 256;
/// `FASENG_MAX_PAGE_LOADS` when unset.
pub const DEFAULT_MAX_PAGE_LOADS: u32 = 64;

/// One bounded kind of request.
#[derive(Debug, Clone)]
pub struct Bound {
    permits: Arc<Semaphore>,
    max: u32,
    /// Says what is bounded, in "too many {what} ({max})".
    what: &'static str,
}

impl Bound {
    /// A bound of `max` requests at once; `what` names them in the 503.
    pub fn new(what: &'static str, max: u32) -> Bound {
        Bound {
            permits: Arc::new(Semaphore::new(max as usize)),
            max,
            what,
        }
    }

    /// A permit, or `None` when every permit is taken (answer [`Bound::refusal`]).
    pub fn try_enter(&self) -> Option<OwnedSemaphorePermit> {
        Arc::clone(&self.permits).try_acquire_owned().ok()
    }

    /// Permits free now.
    #[cfg(test)]
    fn available(&self) -> usize {
        self.permits.available_permits()
    }

    /// The 503 of a request beyond the bound.
    pub fn refusal(&self) -> Response {
        tracing::warn!(max = self.max, "too many {}: refusing one", self.what);
        let mut r = Response::new(Body::from(format!(
            "too many {} ({}); try again shortly\n",
            self.what, self.max
        )));
        *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
        let h = r.headers_mut();
        h.insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        r
    }
}

/// The bounds of one faseng process.
#[derive(Debug, Clone)]
pub struct Bounds {
    /// Open live log streams (`/deployments/{id}/events`).
    pub streams: Bound,
    /// Page loads (`/`, `/deployments/{id}`) and log fetches (`/api/deployments/{id}/log`).
    pub page_loads: Bound,
}

impl Bounds {
    /// The bounds of `FASENG_MAX_STREAMS` and `FASENG_MAX_PAGE_LOADS`.
    pub fn new(max_streams: u32, max_page_loads: u32) -> Bounds {
        Bounds {
            streams: Bound::new("open log streams", max_streams),
            page_loads: Bound::new("page loads at once", max_page_loads),
        }
    }
}

/// Middleware of the live log stream route.
pub async fn stream(State(state): State<AppState>, req: Request, next: Next) -> Response {
    held(&state.bounds.streams, req, next).await
}

/// Middleware of the page and log fetch routes.
pub async fn page_load(State(state): State<AppState>, req: Request, next: Next) -> Response {
    held(&state.bounds.page_loads, req, next).await
}

/// Runs the request with a permit of `bound`, kept by the response body until it is
/// sent in full or dropped.
async fn held(bound: &Bound, req: Request, next: Next) -> Response {
    let Some(permit) = bound.try_enter() else {
        return bound.refusal();
    };
    let response = next.run(req).await;
    keep_until_sent(response, permit)
}

/// The same response, with `permit` dropped along with its body: when the last byte is
/// sent, or when the client goes away.
fn keep_until_sent(response: Response, permit: OwnedSemaphorePermit) -> Response {
    let (mut parts, body) = response.into_parts();
    // A body in memory keeps its `content-length` (a stream has none to keep).
    if let Some(len) = axum::body::HttpBody::size_hint(&body).exact()
        && !parts.headers.contains_key(header::CONTENT_LENGTH)
    {
        parts
            .headers
            .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    }
    let body = body.into_data_stream().map(move |chunk| {
        let _held = &permit;
        chunk
    });
    Response::from_parts(parts, Body::from_stream(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_bound_refuses_beyond_its_permits_with_retry_after() {
        let b = Bound::new("open log streams", 2);
        let one = b.try_enter().expect("first");
        let _two = b.try_enter().expect("second");
        assert!(b.try_enter().is_none(), "third");
        let refused = b.refusal();
        assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            refused.headers().get(header::RETRY_AFTER).unwrap(),
            &HeaderValue::from(RETRY_AFTER_SECS)
        );
        let text = axum::body::to_bytes(refused.into_body(), 1024)
            .await
            .unwrap();
        assert_eq!(
            std::str::from_utf8(&text).unwrap(),
            "too many open log streams (2); try again shortly\n"
        );
        drop(one);
        assert_eq!(b.available(), 1);
        let _again = b.try_enter().expect("a freed permit is taken again");
    }

    #[tokio::test]
    async fn a_streamed_body_holds_its_permit_until_dropped() {
        let b = Bound::new("open log streams", 1);
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<&'static str, std::io::Error>>(1);
        let streamed = Response::new(Body::from_stream(
            tokio_stream_from(rx), // an open-ended body, as an SSE stream is
        ));
        let held = keep_until_sent(streamed, b.try_enter().expect("permit"));
        assert_eq!(b.available(), 0, "held while the body is open");
        drop(tx);
        drop(held);
        assert_eq!(b.available(), 1, "released with the body");

        let page = keep_until_sent(
            Response::new(Body::from("page")),
            b.try_enter().expect("permit"),
        );
        assert_eq!(b.available(), 0, "held until the page is sent");
        assert_eq!(page.headers().get(header::CONTENT_LENGTH).unwrap(), "4");
        let bytes = axum::body::to_bytes(page.into_body(), 1024).await.unwrap();
        assert_eq!(&bytes[..], b"page");
        assert_eq!(b.available(), 1, "released once sent");
    }

    fn tokio_stream_from<T: Send + 'static>(
        mut rx: tokio::sync::mpsc::Receiver<T>,
    ) -> impl futures::Stream<Item = T> + Send + 'static {
        futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
    }
}
