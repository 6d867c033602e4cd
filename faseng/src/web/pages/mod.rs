//! The web pages: `/` (every app and environment with its current and last
//! deployment and its lock) and `/deployments/{id}` (one deployment and its
//! log, appended live from `/deployments/{id}/events` while it runs).
//!
//! Nothing here is public: every page and the event stream need the `sig` of
//! their link ([`crate::links::LinkSigner`]). Deployment links are in the
//! GitHub status (`log_url`) and the chat messages; the index link is written
//! to faseng's log at start. The index links each deployment with its own
//! signed link. All links are relative, so the pages work behind a prefix.
//!
//! This module holds the query strings and what both pages share (the signature
//! check, links); `deployment` is one deployment's page and event stream, `index`
//! the overview.

mod deployment;
mod index;

pub use deployment::{deployment, events};
pub use index::index;

use serde::Deserialize;

use super::AppState;

#[derive(Debug, Deserialize)]
pub struct Signed {
    sig: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct EventsQuery {
    sig: Option<String>,
    /// The last sequence number the page shows.
    after: Option<String>,
}

const NEED_LOG_LINK: &str = "403 Forbidden: this log needs its signed link (with ?sig=...). \
Use the link in the deployment's GitHub status (log_url) or chat message, \
or open the deployment from the signed index page.\n";
const NEED_INDEX_LINK: &str = "403 Forbidden: this page needs its signed link (with ?sig=...). \
faseng writes it to its log when it starts: look for `faseng listening` and its `index=` URL.\n";

fn signed_for(state: &AppState, id: i64, sig: Option<&str>) -> bool {
    sig.is_some_and(|s| state.links.verify(id, s))
}

/// The relative link from `/` to deployment `id`'s page.
fn link_from_index(state: &AppState, id: i64) -> String {
    format!("deployments/{id}?sig={}", state.links.sign(id))
}
