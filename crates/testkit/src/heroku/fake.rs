//! The running fake Heroku, what it holds (the builds created, every request
//! received), and what a test reads back from it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use axum::Router;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::api::handle;
use super::{Behaviour, Recorded};

pub(super) struct Build {
    pub(super) app: String,
    pub(super) source_blob: Value,
    pub(super) polls: u32,
    pub(super) created: Instant,
}

pub(super) struct State {
    pub(super) url: String,
    pub(super) behaviour: Behaviour,
    pub(super) requests: Vec<Recorded>,
    pub(super) create_errors_sent: u32,
    pub(super) poll_errors_sent: u32,
    pub(super) poll_429s_sent: u32,
    pub(super) streams_dropped: u32,
    pub(super) builds: HashMap<String, Build>,
}

pub(super) type Shared = Arc<Mutex<State>>;

pub(super) fn lock(state: &Shared) -> MutexGuard<'_, State> {
    // A test that panicked while holding the lock must not hide the requests
    // from the next assertion.
    state.lock().unwrap_or_else(|e| e.into_inner())
}

/// A running fake. It stops when dropped.
pub struct FakeHeroku {
    /// `http://127.0.0.1:PORT`: use as `HEROKU_API_URL`.
    pub url: String,
    state: Shared,
    task: JoinHandle<()>,
}

impl FakeHeroku {
    /// Starts the fake on a random port of 127.0.0.1.
    ///
    /// # Panics
    /// When no port can be bound: the test cannot run anyway.
    pub async fn start(behaviour: Behaviour) -> FakeHeroku {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0 for the fake Heroku");
        let addr = listener.local_addr().expect("local address of the fake");
        let url = format!("http://{addr}");
        let state: Shared = Arc::new(Mutex::new(State {
            url: url.clone(),
            behaviour,
            requests: Vec::new(),
            create_errors_sent: 0,
            poll_errors_sent: 0,
            poll_429s_sent: 0,
            streams_dropped: 0,
            builds: HashMap::new(),
        }));
        let app = Router::new().fallback(handle).with_state(state.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeHeroku { url, state, task }
    }

    /// The key the fake accepts.
    pub fn api_key(&self) -> String {
        lock(&self.state).behaviour.api_key.clone()
    }

    /// Every request so far, in order.
    pub fn requests(&self) -> Vec<Recorded> {
        lock(&self.state).requests.clone()
    }

    /// The requests with this method whose path starts with `prefix`.
    pub fn requests_to(&self, method: &str, prefix: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == method && r.path.starts_with(prefix))
            .collect()
    }

    /// How many builds were created.
    pub fn builds_created(&self) -> usize {
        lock(&self.state).builds.len()
    }

    /// The `source_blob.url` of each build created, in order: what Heroku
    /// would have downloaded.
    pub fn source_urls(&self) -> Vec<String> {
        let st = lock(&self.state);
        let mut builds: Vec<(&String, &Build)> = st.builds.iter().collect();
        // Ids end in the creation number, zero-padded: they sort in order.
        builds.sort_by(|a, b| a.0.cmp(b.0));
        builds
            .into_iter()
            .filter_map(|(_, b)| b.source_blob.get("url").and_then(Value::as_str))
            .map(str::to_string)
            .collect()
    }

    /// How many status polls (`GET /apps/{app}/builds/{id}`) arrived, whatever
    /// they were answered.
    pub fn status_polls(&self) -> usize {
        self.requests()
            .iter()
            .filter(|r| {
                r.method == "GET"
                    && matches!(
                        r.path.trim_matches('/').split('/').collect::<Vec<_>>()[..],
                        ["apps", _, "builds", _]
                    )
            })
            .count()
    }

    /// The requests for output streams, in order (with their `Range` headers).
    pub fn stream_requests(&self) -> Vec<Recorded> {
        self.requests_to("GET", "/streams/")
    }

    /// Changes the behaviour from now on (e.g. make a pending build finish).
    pub fn set_behaviour(&self, behaviour: Behaviour) {
        lock(&self.state).behaviour = behaviour;
    }
}

impl Drop for FakeHeroku {
    fn drop(&mut self) {
        // Stops accepting; connections still open end with the test's runtime.
        self.task.abort();
    }
}
