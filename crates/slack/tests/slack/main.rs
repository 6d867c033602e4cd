//! chima-slack against the fake Slack of chima-testkit, over real HTTP and a real
//! WebSocket on 127.0.0.1: Socket Mode, the Events API router, the chat sender (with a
//! real SQLite store), and Slack's own public examples (`#[ignore]`, `REAL_FIXTURES`).

mod harness;

mod events;
mod real_fixtures;
mod sender;
mod socket;
