//! The build's output stream: read as it comes, cut into lines like a
//! process's output, and resumed from the byte where it broke off (Heroku asks
//! clients to "be prepared to handle disconnects"), while telling the status
//! polls whether output flows.

use std::time::Duration;

use chima_store::Stream;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::{RANGE, RETRY_AFTER, USER_AGENT};
use hyper::{Method, Request, Response, StatusCode, Uri};
use tokio::sync::watch;

use super::http::{Exchange, USER_AGENT_VALUE, chain, parse_retry_after};
use super::platform::Platform;
use super::{ATTEMPTS, Output, set_output, step};
use crate::process::MAX_LINE_BYTES;

/// How a request for the output stream went.
pub(super) enum Opened {
    /// 2xx: the output, whose first `skip` bytes were already read (a server
    /// that ignored the `Range` header sends it all again).
    Body {
        response: Response<Incoming>,
        skip: u64,
    },
    /// 416 to a `Range` past what was read: there is no more output.
    Complete,
    /// No stream this time.
    Failed {
        why: String,
        retry_after: Option<Duration>,
        retryable: bool,
    },
}

impl Platform<'_> {
    /// Streams the build output to the log as stdout lines, and tells the
    /// polls through `state` whether it flows. Never an error: the output is
    /// for people, the build status decides the result.
    ///
    /// A stream that breaks off or cannot be opened is tried again with the
    /// polls' backoff, from the byte where it broke (`Range: bytes=N-`, as the
    /// Build resource's `output_stream_url` documents), for as long as the
    /// build is watched; only an answer that retrying cannot change (401, 403,
    /// 410...) ends it for good.
    pub(super) async fn stream(&self, url: Option<&str>, state: &watch::Sender<Output>) {
        let Some(uri) = url
            .and_then(|u| u.parse::<Uri>().ok())
            .filter(|u| matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some())
        else {
            set_output(state, Output::Down);
            self.note(
                "Heroku gave no usable output_stream_url: the build output will not be shown",
            )
            .await;
            return;
        };
        let cap = self.timing.poll_cap.max(self.timing.poll);
        let mut backoff = self.timing.poll;
        // Bytes of output read so far: where a resumed stream starts.
        let mut read: u64 = 0;
        let mut failures: u32 = 0;
        let mut said_down = false;
        let mut splitter = LineSplitter::default();
        let mut ready = Vec::new();
        loop {
            let retry_after = match self.open_stream(&uri, read).await {
                Opened::Body { response, mut skip } => {
                    let mut body = response.into_body();
                    let broke = loop {
                        let data = match body.frame().await {
                            None => break None,
                            Some(Err(e)) => break Some(chain(&e)),
                            Some(Ok(frame)) => match frame.into_data() {
                                Ok(data) => data,
                                Err(_) => continue,
                            },
                        };
                        let repeated = usize::try_from(skip).unwrap_or(usize::MAX).min(data.len());
                        skip -= repeated as u64;
                        let data = data.slice(repeated..);
                        if data.is_empty() {
                            continue;
                        }
                        read += data.len() as u64;
                        if *state.borrow() != Output::Streaming {
                            // Output flows (again): the polls slow down and
                            // the backoff starts over.
                            set_output(state, Output::Streaming);
                            backoff = self.timing.poll;
                            failures = 0;
                            if said_down {
                                said_down = false;
                                tracing::info!("Heroku output stream resumed");
                                self.note("the Heroku build output is back").await;
                            }
                        }
                        splitter.push(&data, &mut ready);
                        for line in ready.drain(..) {
                            if self.lines.send((Stream::Stdout, line)).await.is_err() {
                                return;
                            }
                        }
                    };
                    let Some(why) = broke else {
                        break;
                    };
                    set_output(state, Output::Down);
                    tracing::warn!(error = %why, "Heroku output stream broke off; resuming it");
                    if !said_down {
                        said_down = true;
                        self.note(format!(
                            "the Heroku build output broke off ({why}): resuming it, and watching \
                             the build status meanwhile"
                        ))
                        .await;
                    }
                    None
                }
                Opened::Complete => break,
                Opened::Failed {
                    why,
                    retry_after,
                    retryable,
                } => {
                    set_output(state, Output::Down);
                    failures += 1;
                    if !retryable {
                        tracing::warn!(error = %why, "Heroku output stream refused; giving up on it");
                        self.note(format!(
                            "the Heroku build output is not available ({why}): watching the build status"
                        ))
                        .await;
                        break;
                    }
                    // Heroku may answer 404 for a moment before the stream
                    // exists: only repeated failures are worth a line.
                    if failures >= ATTEMPTS && !said_down {
                        said_down = true;
                        tracing::warn!(error = %why, "Heroku output stream unavailable; retrying");
                        self.note(format!(
                            "the Heroku build output is not available ({why}): trying again, and \
                             watching the build status meanwhile"
                        ))
                        .await;
                    }
                    retry_after
                }
            };
            let wait = retry_after
                .unwrap_or_else(|| step(&mut backoff, cap))
                .min(self.timing.max_retry_wait);
            tokio::time::sleep(wait).await;
        }
        if *state.borrow() != Output::Down {
            set_output(state, Output::Ended);
        }
        if let Some(line) = splitter.finish() {
            let _ = self.lines.send((Stream::Stdout, line)).await;
        }
    }

    /// `GET output_stream_url`, without the API key (it is a capability URL on
    /// another host), from byte `from` on.
    pub(super) async fn open_stream(&self, uri: &Uri, from: u64) -> Opened {
        let mut request = Request::builder()
            .method(Method::GET)
            .uri(uri.clone())
            .header(USER_AGENT, USER_AGENT_VALUE);
        if from > 0 {
            request = request.header(RANGE, format!("bytes={from}-"));
        }
        let request = match request.body(Full::new(Bytes::new())) {
            Ok(r) => r,
            Err(e) => {
                return Opened::Failed {
                    why: format!("cannot build the request: {e}"),
                    retry_after: None,
                    retryable: false,
                };
            }
        };
        let sent = tokio::time::timeout(self.timing.request_timeout, self.http.send(request));
        match sent.await {
            Ok(Ok(r)) if r.status() == StatusCode::PARTIAL_CONTENT => Opened::Body {
                response: r,
                skip: 0,
            },
            Ok(Ok(r)) if r.status().is_success() => Opened::Body {
                response: r,
                skip: from,
            },
            Ok(Ok(r)) if r.status() == StatusCode::RANGE_NOT_SATISFIABLE && from > 0 => {
                Opened::Complete
            }
            Ok(Ok(r)) => {
                let status = r.status();
                Opened::Failed {
                    why: format!("answered {}", status.as_u16()),
                    retry_after: r.headers().get(RETRY_AFTER).and_then(parse_retry_after),
                    retryable: status == StatusCode::NOT_FOUND
                        || status == StatusCode::TOO_MANY_REQUESTS
                        || status.is_server_error(),
                }
            }
            Ok(Err(Exchange::Fatal(why))) => Opened::Failed {
                why,
                retry_after: None,
                retryable: false,
            },
            Ok(Err(Exchange::Network(why))) => Opened::Failed {
                why,
                retry_after: None,
                retryable: true,
            },
            Err(_) => Opened::Failed {
                why: format!(
                    "no answer within {} s",
                    self.timing.request_timeout.as_secs()
                ),
                retry_after: None,
                retryable: true,
            },
        }
    }
}

/// Turns the chunks of the output stream into lines. Chunks are cut anywhere,
/// lines are cut at [`MAX_LINE_BYTES`] like a process's output is.
#[derive(Default)]
struct LineSplitter {
    buf: Vec<u8>,
    cut: usize,
}

impl LineSplitter {
    fn push(&mut self, mut data: &[u8], out: &mut Vec<String>) {
        while !data.is_empty() {
            let (content, rest, ends) = match data.iter().position(|&b| b == b'\n') {
                Some(i) => (&data[..i], &data[i + 1..], true),
                None => (data, &data[data.len()..], false),
            };
            let room = MAX_LINE_BYTES.saturating_sub(self.buf.len());
            let kept = content.len().min(room);
            self.buf.extend_from_slice(&content[..kept]);
            self.cut += content.len() - kept;
            if ends {
                out.push(self.take_line());
            }
            data = rest;
        }
    }

    /// The last line when the stream ended without a newline.
    fn finish(mut self) -> Option<String> {
        (!self.buf.is_empty() || self.cut > 0).then(|| self.take_line())
    }

    fn take_line(&mut self) -> String {
        if self.buf.last() == Some(&b'\r') {
            self.buf.pop();
        }
        let mut line = String::from_utf8_lossy(&self.buf).into_owned();
        if self.cut > 0 {
            line.push_str(&format!(" [line cut: {} more bytes]", self.cut));
        }
        self.buf.clear();
        self.cut = 0;
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(chunks: &[&[u8]]) -> Vec<String> {
        let mut s = LineSplitter::default();
        let mut out = Vec::new();
        for c in chunks {
            s.push(c, &mut out);
        }
        out.extend(s.finish());
        out
    }

    #[test]
    fn lines_are_reassembled_across_chunks() {
        assert_eq!(
            split(&[b"-----> Bui", b"lding\r\n  done\n\nlast"]),
            ["-----> Building", "  done", "", "last"]
        );
        assert!(split(&[b""]).is_empty());
    }

    #[test]
    fn long_lines_are_cut_with_a_note() {
        let long = vec![b'x'; MAX_LINE_BYTES + 10];
        let lines = split(&[&long[..100], &long[100..], b"\nnext\n"]);
        assert_eq!(lines.len(), 2);
        assert!(lines[0].ends_with(" [line cut: 10 more bytes]"));
        assert!(lines[0].starts_with(&"x".repeat(MAX_LINE_BYTES)));
        assert_eq!(lines[1], "next");
    }
}
