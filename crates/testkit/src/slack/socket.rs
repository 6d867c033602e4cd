//! Socket Mode: the WebSocket the app connects to, its `hello` and
//! `disconnect` frames, the envelopes pushed to it and the acknowledgements
//! read back.

use axum::extract::State;
use axum::extract::ws::{Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::APP_ID;
use super::state::{Connection, Outbound, Shared, lock};

pub(super) async fn socket(State(state): State<Shared>, ws: WebSocketUpgrade) -> Response {
    ws.on_upgrade(move |socket| run_socket(socket, state))
}

pub(super) async fn run_socket(mut socket: WebSocket, state: Shared) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let index = {
        let mut st = lock(&state);
        st.accepted += 1;
        let hello = json!({
            "type": "hello",
            "num_connections": 1,
            "debug_info": {
                "host": "applink-testkit",
                "build_number": 1,
                "approximate_connection_time": 18060,
            },
            "connection_info": {"app_id": APP_ID},
        });
        let _ = tx.send(Outbound::Text(hello.to_string()));
        // Older connections no longer get envelopes.
        for conn in &mut st.connections {
            conn.live = false;
        }
        while let Some(pending) = st.pending.pop_front() {
            let _ = tx.send(Outbound::Text(pending));
        }
        st.connections.push(Connection { tx, live: true });
        st.connections.len() - 1
    };
    loop {
        tokio::select! {
            out = rx.recv() => match out {
                Some(Outbound::Text(text)) => {
                    if socket.send(WsMessage::Text(text.into())).await.is_err() {
                        break;
                    }
                }
                Some(Outbound::Drop) | None => {
                    // Dropping the socket closes the TCP stream with no close frame.
                    drop(socket);
                    mark_gone(&state, index);
                    return;
                }
            },
            incoming = socket.recv() => match incoming {
                Some(Ok(WsMessage::Text(text))) => {
                    if let Ok(frame) = serde_json::from_str::<Value>(text.as_str()) {
                        lock(&state).acks.push(frame);
                    }
                }
                Some(Ok(WsMessage::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
        }
    }
    mark_gone(&state, index);
}

/// A connection that ended: what was meant for it but not sent is lost, as with Slack
/// (which redelivers unacknowledged envelopes; tests push again if they need to).
pub(super) fn mark_gone(state: &Shared, index: usize) {
    if let Some(conn) = lock(state).connections.get_mut(index) {
        conn.live = false;
    }
}
